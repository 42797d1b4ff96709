// The gRPC service end to end (fixture: service_test_fixture.h): errors and
// bad input.
//
// Every error status (sessions, documents, queries, shutdown), and invalid
// UTF-8 in every text field of every request, sent as raw wire bytes.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/fot.grpc.pb.h"
#include "src/server/session_manager.h"
#include "tests/src/server/service_test_fixture.h"

namespace fot::service_test {
namespace {

TEST_F(ServiceTest, ErrorsGetTheRightStatus) {
  SessionManagerOptions options;
  options.max_sessions = 2;
  options.max_pending_text_bytes = 4096;
  options.writer_wait = absl::Seconds(1);
  auto s = Start(DataDir("errors"), options, /*max_message_bytes=*/64 << 10);
  pb::Fot::Stub* stub = s->stub.get();
  auto code = [](const grpc::Status& status) { return status.error_code(); };
  using grpc::StatusCode;

  // Sessions: names, options, duplicates, the limit, unknown names.
  EXPECT_EQ(code(CreateSession(stub, "bad/name")), StatusCode::INVALID_ARGUMENT);
  pb::SessionOptions bad;
  bad.set_retrieval("knn:0");
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  bad.Clear();
  bad.set_index("btree");
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  bad.Clear();
  bad.set_memory_dtype("f8");
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  bad.Clear();
  bad.set_last_context_length(1000);
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(CreateSession(stub, "s").ok());
  EXPECT_EQ(code(CreateSession(stub, "s")), StatusCode::ALREADY_EXISTS);
  ASSERT_TRUE(CreateSession(stub, "t").ok());
  EXPECT_EQ(code(CreateSession(stub, "u")), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(Generate(stub, Question("nope")).status), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(Ingest(stub, "nope", "d", {"x"}, false)), StatusCode::NOT_FOUND);
  {
    grpc::ClientContext context;
    pb::DeleteSessionRequest request;
    request.set_session("nope");
    pb::DeleteSessionResponse response;
    EXPECT_EQ(code(stub->DeleteSession(&context, request, &response)), StatusCode::NOT_FOUND);
  }

  // Documents: empty, duplicate, too large, resume errors (invalid UTF-8:
  // InvalidUtf8IsRefusedByTheParserAndTheServerServesOn).
  EXPECT_EQ(code(Ingest(stub, "s", "empty", {""}, false)), StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(Ingest(stub, "s", "doc", {Documents()[0]}, true).ok());
  EXPECT_EQ(code(Ingest(stub, "s", "doc", {"again"}, false)), StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(code(Ingest(stub, "s", "huge", {std::string(100 << 10, 'a')}, false)),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(Ingest(stub, "s", "nospace", Split(std::string(8000, 'b'), 1000), false)),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(Ingest(stub, "s", "new", {"x"}, false, nullptr, true, 5)),
            StatusCode::OUT_OF_RANGE);
  pb::IngestResponse ack;
  ASSERT_TRUE(
      Ingest(stub, "s", "open", {"one two three four", " five"}, false, &ack, false, 0, 1).ok());
  ASSERT_TRUE(Ingest(stub, "s", "later", {"five"}, false).ok());
  EXPECT_EQ(code(Ingest(stub, "s", "open", {" more"}, false, nullptr, true, 0)),
            StatusCode::FAILED_PRECONDITION);
  {
    grpc::ClientContext context;  // another stream is ingesting into the session
    auto stream = stub->Ingest(&context);
    pb::IngestRequest request;
    request.mutable_open()->set_session("s");
    request.mutable_open()->set_document("busy");
    pb::IngestResponse first;
    ASSERT_TRUE(stream->Write(request) && stream->Read(&first));
    EXPECT_EQ(code(Ingest(stub, "s", "waiting", {"x"}, false)), StatusCode::ABORTED);
    stream->WritesDone();
    while (stream->Read(&first)) {
    }
    EXPECT_TRUE(stream->Finish().ok());
  }
  {
    grpc::ClientContext context;  // a chunk before `open`
    auto stream = stub->Ingest(&context);
    pb::IngestRequest request;
    request.mutable_chunk()->set_text("x");
    stream->Write(request);
    stream->WritesDone();
    pb::IngestResponse ignored;
    while (stream->Read(&ignored)) {
    }
    EXPECT_EQ(code(stream->Finish()), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext context;  // token ids outside the vocabulary
    auto stream = stub->Ingest(&context);
    pb::IngestRequest request;
    request.mutable_open()->set_session("t");
    request.mutable_open()->set_document("ids");
    stream->Write(request);
    request.Clear();
    request.mutable_chunk()->add_token_ids(kVocab + 5);
    stream->Write(request);
    stream->WritesDone();
    pb::IngestResponse ignored;
    while (stream->Read(&ignored)) {
    }
    EXPECT_EQ(code(stream->Finish()), StatusCode::INVALID_ARGUMENT);
  }

  // Queries: sampling, lengths, filters, empty input.
  pb::GenerateRequest request = Question("s");
  request.set_temperature(-1);
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  request = Question("s");
  request.set_top_p(2);
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  request = Question("s", -3);
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  request = Question("s");
  request.set_retrieval("knn:-1");
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  for (const char* spec : {"knn:0:exact", "knn:4:exactly", "dense:exact", "knn::exact"}) {
    request = Question("s");
    request.set_retrieval(spec);
    EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT) << spec;
  }
  // An exact retrieval still checks its document filter.
  request = Question("s");
  request.set_retrieval("knn:4:exact");
  request.add_documents("no-such-document");
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::NOT_FOUND);
  request = Question("s");
  request.add_documents("no-such-document");
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::NOT_FOUND);
  request = Question("s");
  request.clear_question();
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  {
    grpc::ClientContext context;
    pb::ListEntriesRequest list;
    list.set_session("s");
    list.set_layer(0);  // not a memory layer
    pb::ListEntriesResponse response;
    EXPECT_EQ(code(stub->ListEntries(&context, list, &response)), StatusCode::INVALID_ARGUMENT);
  }

  // The server still serves everyone after all of that.
  EXPECT_TRUE(Generate(stub, Question("s")).status.ok());

  // Shutdown: every call is UNAVAILABLE.
  s->manager->Shutdown();
  EXPECT_EQ(code(Generate(stub, Question("s")).status), StatusCode::UNAVAILABLE);
  EXPECT_EQ(code(CreateSession(stub, "v")), StatusCode::UNAVAILABLE);
  s->server->Shutdown(absl::ZeroDuration());
  EXPECT_EQ(code(Generate(stub, Question("s")).status), StatusCode::UNAVAILABLE);
}

// --- invalid UTF-8 in every text field, through raw wire bytes --------------

// One call of `method` ("/fot.v1.Fot/Generate") with `request` as its raw wire
// bytes: one message, then half-close, whatever kind the method is (a generic
// call is a stream both ways on the wire). Returns the call's status.
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& request) {
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto call = generic.PrepareCall(&context, method, &queue);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  queue.Next(&tag, &ok);
  const grpc::Slice slice(request);
  grpc::ByteBuffer message(&slice, 1);
  call->Write(message, reinterpret_cast<void*>(2));
  queue.Next(&tag, &ok);  // not ok if the server has already answered
  call->WritesDone(reinterpret_cast<void*>(3));
  queue.Next(&tag, &ok);
  grpc::ByteBuffer response;
  do {
    call->Read(&response, reinterpret_cast<void*>(4));
    queue.Next(&tag, &ok);
  } while (ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return status;
}

// Paths (field chains) to every string field of `type`, nested messages
// included.
void TextFieldsOf(const google::protobuf::Descriptor* type,
                  std::vector<const google::protobuf::FieldDescriptor*> chain,
                  std::vector<std::vector<const google::protobuf::FieldDescriptor*>>* out) {
  using google::protobuf::FieldDescriptor;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    std::vector<const FieldDescriptor*> path = chain;
    path.push_back(field);
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      out->push_back(path);
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && path.size() < 4) {
      TextFieldsOf(field->message_type(), path, out);
    }
  }
}

// Text fields are `string`: a hand-made message whose text is not UTF-8 fails
// protobuf's parse before the service sees it (fot.proto says what the client
// gets), and the server answers the next call.
TEST_F(ServiceTest, InvalidUtf8IsRefusedByTheParserAndTheServerServesOn) {
  auto s = Start(DataDir("utf8"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "u").ok());
  const google::protobuf::ServiceDescriptor* service =
      pb::GenerateRequest::descriptor()->file()->FindServiceByName("Fot");
  ASSERT_NE(service, nullptr);
  int checked = 0;
  for (int m = 0; m < service->method_count(); ++m) {
    const google::protobuf::MethodDescriptor* method = service->method(m);
    std::vector<std::vector<const google::protobuf::FieldDescriptor*>> fields;
    TextFieldsOf(method->input_type(), {}, &fields);
    for (const auto& chain : fields) {
      std::unique_ptr<google::protobuf::Message> request(
          google::protobuf::MessageFactory::generated_factory()
              ->GetPrototype(method->input_type())
              ->New());
      google::protobuf::Message* message = request.get();
      std::string path = method->input_type()->name();
      for (const google::protobuf::FieldDescriptor* field : chain) {
        const google::protobuf::Reflection* reflection = message->GetReflection();
        path += "." + field->name();
        if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
          message = field->is_repeated() ? reflection->AddMessage(message, field)
                                         : reflection->MutableMessage(message, field);
        } else if (field->is_repeated()) {
          reflection->AddString(message, field, "caf\xe9");  // Latin-1
        } else {
          reflection->SetString(message, field, "caf\xe9");
        }
      }
      std::string wire;
      ASSERT_TRUE(request->SerializePartialToString(&wire));  // as a raw client would
      const grpc::Status status = RawCall(s->channel, "/fot.v1.Fot/" + method->name(), wire);
      if (method->client_streaming()) {
        // Ingest: the stream has no `open` the server could read.
        EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
        EXPECT_NE(status.error_message().find("text fields must be UTF-8"), std::string::npos)
            << path << ": " << status.error_message();
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL)
            << path << ": " << status.error_message();
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 33);  // every client-written text field of fot.proto

  // A chunk that fails to parse ends the stream as a broken one does: what
  // came before is acknowledged, the document stays open and resumes.
  const std::string good = "fine words and more ";
  pb::IngestResponse ack;
  EXPECT_TRUE(Ingest(s->stub.get(), "u", "half", {good, "bro\xffken"}, true, &ack).ok());
  EXPECT_LE(ack.resume_offset(), static_cast<int64_t>(good.size()));
  EXPECT_FALSE(ack.complete());
  ASSERT_TRUE(Ingest(s->stub.get(), "u", "half", {good.substr(ack.resume_offset()), "broken"},
                     false, &ack, /*resume=*/true, ack.resume_offset())
                  .ok());
  EXPECT_TRUE(ack.complete());
  EXPECT_EQ(ack.resume_offset(), static_cast<int64_t>(good.size() + 6));
  // Valid UTF-8 everywhere still works, and the server serves on.
  pb::GenerateRequest request = Question("u", 2);
  request.add_stop("caf\xc3\xa9");
  EXPECT_TRUE(Generate(s->stub.get(), request).status.ok());
}

}  // namespace
}  // namespace fot::service_test
