// The gRPC service end to end (fixture: service_test_fixture.h): traces,
// scoring and memory inspection.
//
// Traced entries name the document, position and token they came from; memory
// stats, listing (paged from any offset), entry context and search; Score
// against a one-shot forward; and the text of scored and inspected tokens
// (always valid UTF-8, concatenating to the decoded text).
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "base/utf8.h"
#include "gtest/gtest.h"
#include "proto/fot.grpc.pb.h"
#include "src/server/session_manager.h"
#include "tests/src/server/service_test_fixture.h"

namespace fot::service_test {
namespace {

TEST_F(ServiceTest, TracesAndInspection) {
  auto s = Start(DataDir("inspect"));
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "i").ok());
  IngestAll(stub, "i", 0);
  const std::vector<int> all = AllDocumentTokens();

  // Each traced entry names the document, position and token it came from.
  pb::GenerateRequest request = Question("i", 4);
  request.set_trace(true);
  request.set_trace_top(3);
  const Answer answer = Generate(stub, request);
  ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
  auto documents = (*s->manager->Get("i"))->session().Documents();
  int checked = 0;
  for (const pb::GenerateResponse& m : answer.messages) {
    if (m.done()) continue;
    ASSERT_EQ(m.trace_size(), 2);  // memory layers 1 and 2
    for (const pb::LayerRetrieval& layer : m.trace()) {
      ASSERT_EQ(layer.heads_size(), 4);
      for (const pb::HeadRetrieval& head : layer.heads()) {
        EXPECT_EQ(head.entries_size(), 3);
        for (const pb::RetrievedEntry& e : head.entries()) {
          EXPECT_GE(e.attention_share(), 0);
          EXPECT_LE(e.attention_share(), 1);
          const int64_t id = e.entry().id();
          if (id >= static_cast<int64_t>(all.size())) {
            EXPECT_EQ(e.entry().document_index(), -1);
            continue;
          }
          const DocumentInfo& d = documents[e.entry().document_index()];
          EXPECT_EQ(e.entry().document(), d.name);
          EXPECT_EQ(d.first + e.entry().position(), id);
          EXPECT_EQ(e.entry().token_id(), all[id]);
          EXPECT_EQ(e.entry().token_text(), tokenizer_->PieceText(all[id]));
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 0);

  // Stats, paged listing, context, search.
  grpc::ClientContext c1;
  pb::MemoryStatsRequest stats_request;
  stats_request.set_session("i");
  pb::MemoryStatsResponse stats;
  ASSERT_TRUE(stub->MemoryStats(&c1, stats_request, &stats).ok());
  ASSERT_EQ(stats.layers_size(), 2);
  const int64_t committed = stats.committed_tokens();
  EXPECT_GT(committed, 0);
  EXPECT_EQ(stats.layers(0).heads(0).entries(), committed);
  EXPECT_EQ(stats.documents_size(), 3);
  // The traced generation above searched every head's store (a flat one:
  // every key of it per query), which took some time.
  for (const pb::LayerStats& layer : stats.layers()) {
    for (const pb::HeadStats& head : layer.heads()) {
      EXPECT_GT(head.searched_queries(), 0);
      EXPECT_GE(head.keys_scored(), head.searched_queries());
      EXPECT_GT(head.search_nanos(), 0);
    }
  }

  std::vector<pb::MemoryEntry> listed;
  std::string token;
  do {
    grpc::ClientContext c;
    pb::ListEntriesRequest list;
    list.set_session("i");
    list.set_layer(2);
    list.set_page_size(10);
    list.set_page_token(token);
    pb::ListEntriesResponse page;
    ASSERT_TRUE(stub->ListEntries(&c, list, &page).ok());
    EXPECT_EQ(page.total_entries(), committed);
    listed.insert(listed.end(), page.entries().begin(), page.entries().end());
    token = page.next_page_token();
  } while (!token.empty());
  ASSERT_EQ(static_cast<int64_t>(listed.size()), committed);
  for (int64_t i = 0; i < committed; ++i) {
    EXPECT_EQ(listed[i].id(), i);
    EXPECT_EQ(listed[i].token_id(), all[i]);
  }

  grpc::ClientContext c2;
  pb::EntryContextRequest context_request;
  context_request.set_session("i");
  context_request.set_id(20);
  context_request.set_radius(4);
  pb::EntryContextResponse context;
  ASSERT_TRUE(stub->EntryContext(&c2, context_request, &context).ok());
  EXPECT_FALSE(context.entries().empty());
  EXPECT_FALSE(context.entry_text().empty());

  grpc::ClientContext c3;
  pb::SearchMemoryRequest search;
  search.set_session("i");
  search.set_text("the quiet river");
  search.set_top(2);
  pb::SearchMemoryResponse found;
  ASSERT_TRUE(stub->SearchMemory(&c3, search, &found).ok());
  ASSERT_EQ(found.layers_size(), 2);
  EXPECT_EQ(found.layers(0).heads(0).entries_size(), 2);

  // Score: log-likelihood and perplexity of a continuation agree with a
  // one-shot forward.
  grpc::ClientContext c4;
  pb::ScoreRequest score_request;
  score_request.set_session("i");
  score_request.set_context(" the river");
  score_request.set_continuation(" sees birds");
  pb::ScoreResponse score;
  ASSERT_TRUE(stub->Score(&c4, score_request, &score).ok());
  std::vector<int> tokens = all;
  for (int t : tokenizer_->Encode(" the river")) tokens.push_back(t);
  const std::vector<int> continuation = tokenizer_->Encode(" sees birds");
  tokens.insert(tokens.end(), continuation.begin(), continuation.end());
  std::vector<float> logits(tokens.size() * kVocab);
  ModelState state = *engine_->NewState();
  ASSERT_TRUE(engine_
                  ->Prefill(tokens, kLast, &state, LogitsMode::kAll,
                            [&](int64_t first, int64_t rows, const float* l) {
                              std::copy(l, l + rows * kVocab, logits.begin() + first * kVocab);
                            })
                  .ok());
  double expected = 0;
  for (size_t i = tokens.size() - continuation.size(); i < tokens.size(); ++i) {
    const float* row = logits.data() + (i - 1) * kVocab;
    double sum = 0;
    const float top = row[ArgMax(row, kVocab)];
    for (int v = 0; v < kVocab; ++v) sum += std::exp(double{row[v]} - top);
    expected += row[tokens[i]] - top - std::log(sum);
  }
  EXPECT_NEAR(score.log_likelihood(), expected, 1e-3);
  EXPECT_EQ(score.token_log_probs_size(), static_cast<int>(continuation.size()));
  EXPECT_NEAR(score.perplexity(), std::exp(-expected / continuation.size()), 1e-2);

  // Deleting a document hides its entries.
  grpc::ClientContext c5;
  pb::DeleteDocumentRequest del;
  del.set_session("i");
  del.set_document("doc0");
  pb::DeleteDocumentResponse deleted;
  ASSERT_TRUE(stub->DeleteDocument(&c5, del, &deleted).ok());
  grpc::ClientContext c6;
  ASSERT_TRUE(stub->MemoryStats(&c6, stats_request, &stats).ok());
  EXPECT_LT(stats.layers(0).heads(0).live_entries(), committed);
  EXPECT_EQ(stats.documents_size(), 2);
}

TEST_F(ServiceTest, ListEntriesPagesFromAnyOffset) {
  auto s = Start(DataDir("paging"));
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "p").ok());
  IngestAll(stub, "p", 0);
  const std::vector<int> all = AllDocumentTokens();
  auto list = [&](int64_t offset, int page_size, const std::string& token,
                  pb::ListEntriesResponse* response) {
    grpc::ClientContext context;
    pb::ListEntriesRequest request;
    request.set_session("p");
    request.set_layer(1);
    request.set_page_size(page_size);
    request.set_offset(offset);
    request.set_page_token(token);
    return stub->ListEntries(&context, request, response);
  };
  pb::ListEntriesResponse page;
  ASSERT_TRUE(list(0, 1, "", &page).ok());
  const int64_t total = page.total_entries();
  ASSERT_GT(total, 20);

  // Walking by token from an offset visits each later entry once, in order;
  // has_more is set exactly when a token is.
  std::vector<int64_t> ids;
  std::string token;
  int64_t start = 5;
  do {
    ASSERT_TRUE(list(token.empty() ? start : 0, 7, token, &page).ok());
    EXPECT_EQ(page.offset(), token.empty() ? start : ids.back() + 1);
    EXPECT_EQ(page.total_entries(), total);
    EXPECT_EQ(page.has_more(), !page.next_page_token().empty());
    for (const pb::MemoryEntry& e : page.entries()) {
      ids.push_back(e.id());
      EXPECT_EQ(e.token_id(), all[e.id()]);
    }
    token = page.next_page_token();
  } while (!token.empty());
  ASSERT_EQ(static_cast<int64_t>(ids.size()), total - start);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], start + static_cast<int64_t>(i));

  // The last entries, and past the end.
  ASSERT_TRUE(list(total - 2, 10, "", &page).ok());
  EXPECT_EQ(page.entries_size(), 2);
  EXPECT_EQ(page.entries(0).id(), total - 2);
  EXPECT_FALSE(page.has_more());
  EXPECT_TRUE(page.next_page_token().empty());
  ASSERT_TRUE(list(total, 10, "", &page).ok());
  EXPECT_EQ(page.entries_size(), 0);
  EXPECT_FALSE(page.has_more());
  EXPECT_EQ(page.total_entries(), total);
  ASSERT_TRUE(list(total - 3, 3, "", &page).ok());  // exactly the rest
  EXPECT_EQ(page.entries_size(), 3);
  EXPECT_FALSE(page.has_more());

  // Mistakes name what to do.
  grpc::Status status = list(-1, 10, "", &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("offset"), std::string::npos) << status.error_message();
  status = list(3, 10, "12", &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("not both"), std::string::npos) << status.error_message();
  status = list(0, 10, "page-two", &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("next_page_token"), std::string::npos)
      << status.error_message();
}

TEST_F(ServiceTest, ScoreReportsEachTokenWithItsPieceTextAndLogProb) {
  auto s = Start(DataDir("score_tokens"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "sc").ok());
  IngestAll(s->stub.get(), "sc", 0);
  // 東京 and 😀 are not in the vocabulary: their bytes are byte-fallback tokens.
  const std::string continuation = " the river 東京 😀 birds";
  grpc::ClientContext context;
  pb::ScoreRequest request;
  request.set_session("sc");
  request.set_context(" a");
  request.set_continuation(continuation);
  pb::ScoreResponse score;
  const grpc::Status status = s->stub->Score(&context, request, &score);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::vector<int> ids = tokenizer_->Encode(continuation);
  ASSERT_EQ(score.token_scores_size(), static_cast<int>(ids.size()));
  ASSERT_EQ(score.token_log_probs_size(), static_cast<int>(ids.size()));
  std::string text;
  double sum = 0;
  int empty = 0;
  for (int i = 0; i < score.token_scores_size(); ++i) {
    const pb::TokenScore& t = score.token_scores(i);
    EXPECT_EQ(t.token_id(), ids[i]);
    EXPECT_EQ(t.token_id(), score.continuation_token_ids(i));
    EXPECT_EQ(t.piece(), tokenizer_->PieceText(ids[i]));
    EXPECT_EQ(t.log_prob(), score.token_log_probs(i));
    EXPECT_LE(t.log_prob(), 0);
    EXPECT_TRUE(ValidateUtf8(t.text(), false).ok()) << i;
    if (t.text().empty()) ++empty;
    text += t.text();
    sum += t.log_prob();
  }
  EXPECT_EQ(text, tokenizer_->Decode(ids));
  EXPECT_NE(text.find("東京 😀"), std::string::npos) << text;
  EXPECT_GE(empty, 2);  // the first bytes of 東, 京 and 😀 complete nothing
  EXPECT_NEAR(sum, score.log_likelihood(), 1e-3);
}

TEST_F(ServiceTest, EntryContextTextIsValidUtf8AroundEveryEntry) {
  auto s = Start(DataDir("context_text"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "ctx").ok());
  IngestAll(s->stub.get(), "ctx", 0);
  const int64_t committed = (*s->manager->Get("ctx"))->session().Progress().committed_tokens;
  const std::vector<int> all = AllDocumentTokens();
  int byte_entries = 0;
  for (int64_t id = 0; id < committed; ++id) {
    grpc::ClientContext context;
    pb::EntryContextRequest request;
    request.set_session("ctx");
    request.set_id(id);
    request.set_radius(3);
    pb::EntryContextResponse response;
    const grpc::Status status = s->stub->EntryContext(&context, request, &response);
    ASSERT_TRUE(status.ok()) << id << ": " << status.error_message();
    std::vector<int> tokens;
    for (const pb::MemoryEntry& e : response.entries()) tokens.push_back(e.token_id());
    EXPECT_EQ(response.text_before() + response.entry_text() + response.text_after(),
              tokenizer_->Decode(tokens))
        << id;
    for (const std::string* part :
         {&response.text_before(), &response.entry_text(), &response.text_after()}) {
      EXPECT_TRUE(ValidateUtf8(*part, false).ok()) << id;
    }
    if (tokenizer_->PieceText(all[id]).rfind("<0x", 0) == 0) ++byte_entries;
  }
  EXPECT_GT(byte_entries, 0);  // the test saw entries inside characters
}

}  // namespace
}  // namespace fot::service_test
