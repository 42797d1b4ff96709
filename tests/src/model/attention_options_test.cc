// ApplyAttentionSpec: the one parser of attention options as users write them
// (fot-run flags, session options, saved sessions).
#include "src/model/attention_options.h"

#include "gtest/gtest.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

TEST(AttentionSpecTest, LambdaFieldsOfAFotStreamAreNamedInTheError) {
  AttentionSpec spec;
  spec.n_global = 2;
  spec.memory_layers = "1";
  const auto options = ApplyAttentionSpec(spec, AttentionOptions{}, SmallModelConfig());
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(options.status().message().find("n_global, memory_layers are options"),
            std::string::npos)
      << options.status();
}

TEST(AttentionSpecTest, LambdaSpecIsResolvedWithTheModelsDefaults) {
  const ModelConfig config = SmallModelConfig();
  AttentionSpec spec;
  spec.mode = "lambda";
  spec.local_window = 6;
  const auto options = ApplyAttentionSpec(spec, AttentionOptions{}, config);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->mode, AttentionMode::kLambda);
  EXPECT_EQ(options->n_global, 4);
  EXPECT_EQ(options->local_window, 6);
  EXPECT_EQ(*options->memory_layers, config.mem_layers);
}

TEST(AttentionSpecTest, UnsetFieldsKeepTheBaseAndAModeChangeStartsAfresh) {
  const ModelConfig config = SmallModelConfig();
  AttentionSpec lambda;
  lambda.mode = "lambda";
  lambda.n_global = 1;
  const AttentionOptions base = *ApplyAttentionSpec(lambda, AttentionOptions{}, config);
  AttentionSpec window_only;
  window_only.local_window = 5;
  const auto kept = ApplyAttentionSpec(window_only, base, config);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->n_global, 1);
  EXPECT_EQ(kept->local_window, 5);
  AttentionSpec fot;
  fot.mode = "fot";
  const auto back = ApplyAttentionSpec(fot, base, config);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->mode, AttentionMode::kFot);
  EXPECT_FALSE(back->memory_layers.has_value());
}

TEST(AttentionSpecTest, OutOfRangeAndMalformedValuesAreInvalidArguments) {
  const ModelConfig config = SmallModelConfig();
  for (const AttentionSpec& spec :
       {AttentionSpec{"lambda", -1, 0, "", ""}, AttentionSpec{"lambda", std::nullopt, -3, "", ""},
        AttentionSpec{"lambda", std::nullopt, config.max_position_embeddings + 1, "", ""},
        AttentionSpec{"lambda", std::nullopt, 0, "sideways", ""},
        AttentionSpec{"lambda", std::nullopt, 0, "", "1,x"},
        AttentionSpec{"lambda", std::nullopt, 0, "", "99"},
        AttentionSpec{"sparse", {}, 0, "", ""}}) {
    EXPECT_EQ(ApplyAttentionSpec(spec, AttentionOptions{}, config).status().code(),
              absl::StatusCode::kInvalidArgument)
        << spec.mode << " " << spec.local_window << " " << spec.memory_positioning << " "
        << spec.memory_layers;
  }
}

}  // namespace
}  // namespace fot
