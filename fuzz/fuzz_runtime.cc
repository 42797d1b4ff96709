// Linked into every harness (and fuzz-seeds): how the sanitizers meet the
// process, so that a harness fails where production would, not elsewhere.
//
// A failed allocation. ASan's operator new dies when an allocation fails,
// where production's throws std::bad_alloc, which the code under test
// catches (FAISS reading a crafted index.faiss resizes a vector to whatever
// size the file states before it finds the file too short; a request may
// ask for more than the server can give). So the harnesses replace operator
// new and delete with ones over malloc that throw, and ASan's malloc refuses
// single allocations above 200 MB (max_allocation_size_mb) instead of trying:
// an unbounded allocation then shows as what production does with it (an
// error status, or an exception nobody catches, which still crashes), and
// libFuzzer's RSS limit (2 GB) still catches memory that only grows. 200 MB
// is far more than any harness's small inputs and models need, and small
// enough that the six vectors of an HNSW index, each resized by FAISS to what
// the file claims and zero-filled before the read fails, stay under that
// limit (with 1 GiB they did not: kv_store found one). ASan keeps checking
// every access, and every malloc/free pairing.
//
// The tokenizer. Under ASan, src/tokenizer/tokenizer.cc opens the
// SentencePiece libraries deep-bound, past ASan's dlopen check (they need
// their own protobuf). What they allocate goes through libstdc++'s operator
// new, which calls malloc, and comes back through libstdc++'s sized delete,
// which calls operator delete: ASan would report each such pair as an
// alloc-dealloc mismatch. With operator new over malloc (above) there is
// nothing left for that check to tell apart: it is off.
//
// Leaks of FAISS. faiss::read_index (1.7.3) allocates what it reads (the
// index, its memory-mapped lists) before reading it and leaks it when the
// file turns out corrupt (the exception passes raw pointers).
// memory/kv_store_io.cc turns the exception into DataLoss; the leak is
// FAISS's, and not reported. Nor is what clang's OpenMP runtime (libomp)
// allocates for each thread that runs a parallel region (the service's
// request threads), which LeakSanitizer cannot see it still holds.
#include <cstdlib>
#include <new>

extern "C" const char* __asan_default_options() {
  return "alloc_dealloc_mismatch=0:allocator_may_return_null=1:max_allocation_size_mb=200";
}

extern "C" const char* __lsan_default_suppressions() {
  return "leak:faiss::read_\nleak:faiss::OnDiskInvertedLists\nleak:libomp.so\n";
}

namespace {

void* Allocate(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* AllocateAligned(std::size_t size, std::align_val_t alignment) {
  const auto align = static_cast<std::size_t>(alignment);
  void* p = std::aligned_alloc(align, (size + align - 1) / align * align + (size == 0 ? align : 0));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t size) { return Allocate(size); }
void* operator new[](std::size_t size) { return Allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return std::malloc(size ? size : 1);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return std::malloc(size ? size : 1);
}
void* operator new(std::size_t size, std::align_val_t a) { return AllocateAligned(size, a); }
void* operator new[](std::size_t size, std::align_val_t a) { return AllocateAligned(size, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
