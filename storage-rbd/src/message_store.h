// MessageStore: message bodies in `m.<mail-guid>` (doc/design.md).
//
// A body is written once and never modified; COPY and MOVE share it. Its
// xattrs hold the storage-side metadata ("meta": size, XXH3 of the bytes,
// first mailbox, dates, chunking) and a reference count ("ref") with the
// time it last changed.
//
// Reference rule: a reference is taken before a record that points at the
// body is published, and dropped only after that record is gone. The count
// may therefore only be too high after a crash, never too low; gc finds the
// leftovers by scanning the indexes.
//
// Dropping the last reference does not remove the body: a session on any
// node may still show the expunged message and FETCH it. The count stays
// at zero with the time it got there, and only gc removes the body, once
// no record references it and that time is older than the grace period.
// A new reference (COPY of a message still shown) before then takes the
// body back. See doc/design.md, "Body lifetime after expunge".
//
// Large bodies: a body above rbd_stripe_size is split into chunk objects
// `m.<guid>.<n>` (n >= 1) of stripe_size bytes, the head object holding
// chunk 0 and the xattrs. We chunk ourselves rather than use
// libradosstriper: the chunk layout is a plain function of the size (a
// range read needs only the head's metadata), it works on EC pools, and it
// needs no striper locks. Chunks are written before the head, so the head's
// existence is the commit point of a body.
#ifndef STORAGE_RBD_MESSAGE_STORE_H_
#define STORAGE_RBD_MESSAGE_STORE_H_

#include <xxhash.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "account.h"
#include "aio.h"
#include "guid.h"
#include "record_codec.h"
#include "status.h"

namespace rbd {

// A body and the metadata the caller knows of it (size, xxh3 and chunking
// are filled in by the store).
struct BodyToWrite {
  Guid guid;
  std::string_view data;
  BodyMeta meta;
};

class MessageStore {
 public:
  explicit MessageStore(Account* account) : account_(account) {}

  // Writes bodies with one reference each, all in flight at once; a body
  // below stripe_size is one RADOS op. Exists if a GUID is taken.
  Status Write(const std::vector<BodyToWrite>& bodies);

  // Reads [offset, offset+length) (length 0: to the end). A read of the
  // whole body is verified against its XXH3.
  Status Read(const Guid& guid, uint64_t offset, uint64_t length, std::string* out);
  // Reads whole bodies, all in flight at once; statuses[i] for guids[i]
  // (BodyReads, issued and collected at once).
  void ReadMany(const std::vector<Guid>& guids, std::vector<std::string>* out, std::vector<Status>* statuses);

  Status Stat(const Guid& guid, BodyMeta* meta, BodyRef* ref);

  // Takes a reference, also on a released body gc has not reclaimed yet;
  // NotFound once gc has.
  Status AddRef(const Guid& guid);
  // Drops a reference. The body stays, even at zero (see above).
  Status Unref(const Guid& guid);
  // AddRef or Unref (delta +1 or -1) of many bodies with every read, then
  // every guarded write, in flight at once: a COPY or EXPUNGE of N stored
  // bodies costs two round trips, not 2N. A body whose reference changed
  // in between is retried alone. statuses[i] is the result for guids[i].
  void ChangeRefs(const std::vector<Guid>& guids, int delta, std::vector<Status>* statuses);
  // Removes the body only if its reference is still exactly `seen` (gc:
  // a concurrent AddRef wins). Conflict when it changed.
  Status RemoveIfUnchanged(const Guid& guid, const BodyRef& seen);
  // Removes chunk objects 1..chunks-1 (missing ones are fine).
  Status RemoveChunks(const Guid& guid, uint32_t chunks);

  Account* account() { return account_; }

 private:
  Account* account_;
};

// Whole bodies being read, all in flight from construction on, so that a
// caller can do other reads meanwhile (a FETCH batch reads its inline
// bodies from the index while its stored ones are on the way), then
// Collect. Not movable: librados writes the results into it.
class BodyReads {
 public:
  BodyReads(Account* account, const std::vector<Guid>& guids);
  BodyReads(const BodyReads&) = delete;
  BodyReads& operator=(const BodyReads&) = delete;
  // Waits for any op not collected.
  ~BodyReads();

  // Waits for every read (within the command's deadline); statuses[i]
  // for guids[i]. Once.
  void Collect(std::vector<std::string>* out, std::vector<Status>* statuses);

 private:
  struct HeadRead {
    AioCompletionPtr completion;
    librados::bufferlist meta_bl, data_bl;
    int meta_r = 0, read_r = 0;
  };
  Account* account_;
  std::vector<Guid> guids_;
  AioWaiter waiter_;
  Deadline deadline_;
  std::chrono::steady_clock::time_point issued_;
  std::vector<HeadRead> reads_;
  bool collected_ = false;
};

// Streams one body into the store with memory bounded by the head chunk
// plus a few pieces in flight, whatever the body's size. Nothing is
// visible until Finish() writes the head object; chunk objects `m.<guid>.<n>`
// are written in pieces as the data arrives. A writer freed unfinished
// removes what it wrote; what a crash leaves is a chunk without a head,
// which gc reclaims after rbd_gc_grace (so Finish() refuses a stream that
// took half of that long: its first chunks could be reclaimed meanwhile).
class BodyWriter {
 public:
  BodyWriter(Account* account, const Guid& guid);
  ~BodyWriter();
  BodyWriter(const BodyWriter&) = delete;
  BodyWriter& operator=(const BodyWriter&) = delete;

  Status Append(std::string_view data);
  // `meta` supplies mailbox and dates; size and checksum are computed.
  // The head carries one reference, for the record the caller publishes.
  Status Finish(const BodyMeta& meta);
  uint64_t size() const { return size_; }

 private:
  Status FlushPiece();
  // Waits until at most `keep` pieces are in flight, each until the
  // command's deadline: a piece not written by then is cancelled and the
  // body fails (gc reclaims a chunk written after all).
  Status WaitInFlight(size_t keep);
  uint32_t ChunksWritten() const;

  Account* account_;
  Guid guid_;
  uint64_t chunk_size_;
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> hash_;
  std::string head_;            // chunk 0, written last by Finish()
  librados::bufferlist piece_;  // the next bytes of a chunk object
  uint64_t piece_start_ = 0;    // body offset of piece_
  uint64_t size_ = 0;
  std::chrono::steady_clock::time_point first_chunk_write_;
  struct InFlight {
    AioCompletionPtr completion;
    std::string oid;
    std::chrono::steady_clock::time_point issued;
    librados::bufferlist data;
  };
  // Declared before in_flight_: it must outlive their callbacks.
  AioWaiter waiter_;
  std::vector<InFlight> in_flight_;
  bool finished_ = false;
};

// Reads [offset, end) of a body whose metadata is known, from the objects
// holding it (chunk 0 is the head), all in flight from construction on.
class RangeRead {
 public:
  // Each read is recorded in `log` once waited for.
  RangeRead(librados::IoCtx& io, OpLog* log, const Guid& guid, const BodyMeta& meta, uint64_t offset,
            uint64_t end);
  // Waits for the reads still in flight: librados fills their buffers.
  ~RangeRead();
  RangeRead(const RangeRead&) = delete;
  RangeRead& operator=(const RangeRead&) = delete;

  uint64_t offset() const { return offset_; }
  uint64_t end() const { return end_; }
  // Waits for the reads, until `until` (then Unavailable), and appends
  // the range to *out.
  Status Finish(Deadline until, std::string* out);

 private:
  struct ChunkRead {
    std::string oid;
    uint64_t length;
    AioCompletionPtr completion;
    librados::bufferlist bl;
  };
  librados::IoCtx* io_;
  OpLog* log_;
  std::chrono::steady_clock::time_point issued_;
  uint64_t offset_, end_;
  // Declared before reads_: it must outlive their callbacks.
  AioWaiter waiter_;
  std::vector<std::unique_ptr<ChunkRead>> reads_;
};

// Reads one body by range: its metadata once, then only the chunks each
// range covers, so a partial FETCH of a large message costs a read of the
// bytes it returns. The first read also brings the body's first bytes
// (small bodies need no second round trip). Reads that cover the body
// front to back, in order, are verified against its XXH3 when they reach
// the end (Corrupt then).
class BodyReader {
 public:
  // Opens a stored body `m.<guid>`: one read.
  static Status Open(Account* account, const Guid& guid, std::unique_ptr<BodyReader>* reader);
  // A body already read whole and verified (inline in an index).
  static std::unique_ptr<BodyReader> FromBytes(std::string bytes);

  uint64_t size() const { return meta_.size; }
  // Reads [offset, offset+length), cut at the end of the body.
  Status Read(uint64_t offset, uint64_t length, std::string* out);

 private:
  BodyReader(Account* account, const Guid& guid);

  Account* account_;
  Guid guid_;
  BodyMeta meta_;
  // The body's first bytes, read with the metadata: a read inside them
  // costs no round trip.
  std::string window_;
  // Reads in order (each starting where the last ended) keep the next
  // range of the same length in flight, so a whole-body read waits for
  // RADOS about once, not once per range.
  uint64_t next_offset_ = 0;
  std::unique_ptr<RangeRead> ahead_;
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> hash_;
  uint64_t hashed_ = 0;  // the prefix of the body hashed so far
  bool verify_ = true;
};

uint64_t BodyChecksum(std::string_view data);

}  // namespace rbd

#endif  // STORAGE_RBD_MESSAGE_STORE_H_
