// Codec: the structs of rbd-storage.h on the wire (see wire.h).
//
// Put writes a struct; Get reads one back into storage that `Keep` owns:
// every string and pointer array a decoded struct points to lives in the
// Keep, which must outlive the struct (a call's duration on the service,
// the result's lifetime in the client).
#ifndef REMOTE_CODEC_H_
#define REMOTE_CODEC_H_

#include <deque>
#include <string>
#include <vector>

#include "wire.h"

namespace rbd::remote {

class Keep {
 public:
  const char* String(const char* s);
  const char* String(std::string_view s);
  // A NULL-terminated array of copies of `names`.
  const char* const* Names(const std::vector<std::string>& names);
  template <typename T>
  T* Array(size_t n) {
    arrays_.emplace_back(std::string(n * sizeof(T), '\0'));
    return reinterpret_cast<T*>(arrays_.back().data());
  }
  // Reads a Writer::String into the Keep.
  const char* String(Reader& r);
  const char* const* Strings(Reader& r, size_t* count_r);

 private:
  std::deque<std::string> strings_;
  std::deque<std::vector<const char*>> lists_;
  std::deque<std::string> arrays_;
};

void Put(Writer& w, const rbd_index_status& s);
void Get(Reader& r, Keep& keep, rbd_index_status* s);
void Put(Writer& w, const rbd_index_keys& k);
void Get(Reader& r, Keep& keep, rbd_index_keys* k);
void Put(Writer& w, const rbd_record& rec);
void Get(Reader& r, Keep& keep, rbd_record* rec);
void Put(Writer& w, const rbd_mailbox_entry& e);
void Get(Reader& r, Keep& keep, rbd_mailbox_entry* e);
void Put(Writer& w, const rbd_new_message& m);
void Get(Reader& r, Keep& keep, rbd_new_message* m);
void Put(Writer& w, const rbd_copy_override& o);
void Get(Reader& r, Keep& keep, rbd_copy_override* o);
void Put(Writer& w, const rbd_flag_update& u);
void Get(Reader& r, Keep& keep, rbd_flag_update* u);
void Put(Writer& w, const rbd_flag_change& c);
void Get(Reader& r, Keep& keep, rbd_flag_change* c);
void Put(Writer& w, const rbd_flag_state& s);
void Get(Reader& r, Keep& keep, rbd_flag_state* s);
void Put(Writer& w, const rbd_change& c);
void Get(Reader& r, Keep& keep, rbd_change* c);
void Put(Writer& w, const rbd_settled& s);
void Get(Reader& r, Keep& keep, rbd_settled* s);
void Put(Writer& w, const rbd_op_record& o);
void Get(Reader& r, Keep& keep, rbd_op_record* o);
void Put(Writer& w, const rbd_body_info& i);
void Get(Reader& r, Keep& keep, rbd_body_info* i);
void Put(Writer& w, const rbd_gc_stats& s);
void Get(Reader& r, Keep& keep, rbd_gc_stats* s);
void Put(Writer& w, const rbd_problem& p);
void Get(Reader& r, Keep& keep, rbd_problem* p);
void Put(Writer& w, const rbd_object& o);
void Get(Reader& r, Keep& keep, rbd_object* o);
void Put(Writer& w, const rbd_rebuild_stats& s);
void Get(Reader& r, Keep& keep, rbd_rebuild_stats* s);
void Put(Writer& w, const rbd_dict_entry& e);
void Get(Reader& r, Keep& keep, rbd_dict_entry* e);
void Put(Writer& w, const rbd_dict_change& c);
void Get(Reader& r, Keep& keep, rbd_dict_change* c);

// Arrays of any of the above: a count, then the items.
template <typename T>
void PutArray(Writer& w, const T* items, size_t count) {
  // An item's encoding is about its struct's size or less: a listing of a
  // million records grows the frame once instead of by doubling copies.
  // (C++17's reserve may shrink: only ever asked to grow.)
  const size_t want = w.data().size() + count * sizeof(T);
  if (want > w.data().capacity()) w.data().reserve(want);
  w.U32(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; i++) Put(w, items[i]);
}

template <typename T>
T* GetArray(Reader& r, Keep& keep, size_t* count_r) {
  // Every item takes at least a byte: a count beyond the frame is a bad
  // frame, not an allocation to try.
  size_t n = r.U32();
  if (n > r.remaining()) r.Fail();
  if (r.failed()) n = 0;
  T* items = keep.Array<T>(n);
  for (size_t i = 0; i < n && !r.failed(); i++) Get(r, keep, &items[i]);
  *count_r = r.failed() ? 0 : n;
  return items;
}

}  // namespace rbd::remote

#endif  // REMOTE_CODEC_H_
