#include "client/text_check.h"

#include <google/protobuf/descriptor.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/utf8.h"

namespace fot::client {
namespace {

absl::Status CheckFields(const google::protobuf::Message& message, const std::string& path) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);  // the set ones
  for (const FieldDescriptor* field : fields) {
    const bool text = field->type() == FieldDescriptor::TYPE_STRING;
    if (!text && field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const int n = field->is_repeated() ? reflection.FieldSize(message, field) : 1;
    for (int i = 0; i < n; ++i) {
      const std::string name = field->is_repeated()
                                   ? absl::StrCat(path, ".", field->name(), "[", i, "]")
                                   : absl::StrCat(path, ".", field->name());
      if (!text) {
        FOT_RETURN_IF_ERROR(CheckFields(field->is_repeated()
                                            ? reflection.GetRepeatedMessage(message, field, i)
                                            : reflection.GetMessage(message, field),
                                        name));
        continue;
      }
      std::string scratch;
      const std::string& value =
          field->is_repeated() ? reflection.GetRepeatedStringReference(message, field, i, &scratch)
                               : reflection.GetStringReference(message, field, &scratch);
      if (absl::Status valid = ValidateUtf8(value, /*allow_incomplete_end=*/false); !valid.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": ", valid.message(),
                         "; text must be UTF-8 (convert it first, e.g. with iconv -t UTF-8)"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckText(const google::protobuf::Message& request) {
  return CheckFields(request, request.GetDescriptor()->name());
}

}  // namespace fot::client
