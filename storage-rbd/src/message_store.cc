#include "message_store.h"

#include <algorithm>
#include <ctime>

#include "keys.h"
#include "retry.h"

namespace rbd {

namespace {

// A streamed body is written in pieces of this size, at most this many in
// flight: with the head chunk, what a BodyWriter holds (doc/design.md,
// "Streaming bodies and range reads").
constexpr uint64_t kPieceSize = 1024 * 1024;
constexpr size_t kMaxPiecesInFlight = 4;
// What BodyReader::Open reads of the head with the metadata.
constexpr uint64_t kFirstWindow = 256 * 1024;

librados::bufferlist ToBufferlist(std::string_view s) {
  librados::bufferlist bl;
  bl.append(s.data(), s.size());
  return bl;
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

uint32_t ChunkCount(uint64_t size, uint64_t chunk_size) {
  if (chunk_size == 0 || size <= chunk_size) return 1;
  return static_cast<uint32_t>((size + chunk_size - 1) / chunk_size);
}

// The head op: exclusive create (a GUID is never reused), chunk 0, and
// both xattrs, in one atomic write.
void BuildHeadOp(librados::ObjectWriteOperation* op, std::string_view head_bytes, const BodyMeta& meta) {
  op->create(true);
  op->write_full(ToBufferlist(head_bytes));
  op->setxattr(keys::kBodyMetaAttr, ToBufferlist(Encode(meta)));
  op->setxattr(keys::kBodyRefAttr, ToBufferlist(Encode(BodyRef{1, Now()})));
}

Status ReadObjects(librados::IoCtx& io, OpLog* log, const Guid& guid, const BodyMeta& meta, uint64_t offset,
                   uint64_t end, Deadline until, std::string* out) {
  return RangeRead(io, log, guid, meta, offset, end).Finish(until, out);
}

}  // namespace

uint64_t BodyChecksum(std::string_view data) { return XXH3_64bits(data.data(), data.size()); }

RangeRead::RangeRead(librados::IoCtx& io, OpLog* log, const Guid& guid, const BodyMeta& meta, uint64_t offset,
                     uint64_t end)
    : io_(&io),
      log_(log),
      issued_(std::chrono::steady_clock::now()),
      offset_(offset),
      end_(std::max(offset, end)) {
  // (A read of length 0 would read a whole object.)
  if (offset_ == end_) return;
  const uint64_t cs = meta.chunks > 1 ? meta.chunk_size : meta.size;
  for (uint64_t i = offset / cs; i * cs < end_; i++) {
    const uint64_t start = std::max(offset, i * cs);
    const uint64_t stop = std::min(end_, (i + 1) * cs);
    auto cr = std::make_unique<ChunkRead>();
    cr->oid = i == 0 ? keys::BodyObject(guid) : keys::ChunkObject(guid, static_cast<uint32_t>(i));
    cr->length = stop - start;
    cr->completion = waiter_.NewCompletion();
    io.aio_read(cr->oid, cr->completion.get(), &cr->bl, cr->length, start - i * cs);
    reads_.push_back(std::move(cr));
  }
}

RangeRead::~RangeRead() {
  for (auto& cr : reads_) cr->completion->wait_for_complete_and_cb();
}

Status RangeRead::Finish(Deadline until, std::string* out) {
  Status status;
  for (auto& cr : reads_) {
    int r = waiter_.Wait(*io_, cr->completion, until);
    log_->Add(OpType::kRead, cr->oid, cr->bl.length(), r, issued_);
    if (!status.ok()) continue;
    if (r < 0) {
      status = Status::FromRados(r, "read " + cr->oid);
    } else if (cr->bl.length() != cr->length) {
      status = Status::Corrupt(cr->oid + " is short: " + std::to_string(cr->bl.length()) + " bytes of " +
                               std::to_string(cr->length) + " read");
    } else {
      out->append(cr->bl.c_str(), cr->bl.length());
    }
  }
  return status;
}

Status MessageStore::Write(const std::vector<BodyToWrite>& bodies) {
  const uint64_t chunk_size = account_->config().stripe_size;
  librados::IoCtx& io = account_->mail_io();
  AioWaiter waiter;
  const Deadline deadline = account_->deadline();
  const auto issued = std::chrono::steady_clock::now();
  struct Pending {
    std::string oid;
    uint64_t bytes;
    AioCompletionPtr completion;
  };
  // Chunks of striped bodies first: a head must never exist without them.
  std::vector<Pending> chunks;
  for (const BodyToWrite& b : bodies) {
    uint32_t n = ChunkCount(b.data.size(), chunk_size);
    for (uint32_t i = 1; i < n; i++) {
      std::string_view part = b.data.substr(i * chunk_size, chunk_size);
      Pending p{keys::ChunkObject(b.guid, i), part.size(), waiter.NewCompletion()};
      io.aio_write_full(p.oid, p.completion.get(), ToBufferlist(part));
      chunks.push_back(std::move(p));
    }
  }
  Status status;
  for (Pending& p : chunks) {
    int r = waiter.Wait(io, p.completion, deadline);
    account_->op_log().Add(OpType::kWrite, p.oid, p.bytes, r, issued);
    if (r < 0 && status.ok()) status = Status::FromRados(r, "write " + p.oid);
  }
  if (!status.ok()) return status;

  std::vector<Pending> heads;
  for (const BodyToWrite& b : bodies) {
    BodyMeta meta = b.meta;
    meta.size = b.data.size();
    meta.xxh3 = BodyChecksum(b.data);
    meta.chunks = ChunkCount(b.data.size(), chunk_size);
    meta.chunk_size = meta.chunks > 1 ? chunk_size : 0;
    librados::ObjectWriteOperation op;
    BuildHeadOp(&op, b.data.substr(0, meta.chunks > 1 ? chunk_size : b.data.size()), meta);
    Pending p{keys::BodyObject(b.guid), meta.chunks > 1 ? chunk_size : b.data.size(), waiter.NewCompletion()};
    io.aio_operate(p.oid, p.completion.get(), &op);
    heads.push_back(std::move(p));
  }
  for (Pending& p : heads) {
    int r = waiter.Wait(io, p.completion, deadline);
    account_->op_log().Add(OpType::kWrite, p.oid, p.bytes, r, issued);
    if (r < 0 && status.ok()) status = Status::FromRados(r, "write " + p.oid);
  }
  return status;
}

Status MessageStore::Read(const Guid& guid, uint64_t offset, uint64_t length, std::string* out) {
  librados::IoCtx& io = account_->mail_io();
  const std::string oid = keys::BodyObject(guid);
  // One op reads the metadata and whatever of the range lies in the head.
  librados::ObjectReadOperation op;
  librados::bufferlist meta_bl, head_bl;
  int meta_r = 0, read_r = 0;
  op.getxattr(keys::kBodyMetaAttr, &meta_bl, &meta_r);
  op.read(offset, length, &head_bl, &read_r);
  const Deadline deadline = account_->deadline();
  int r = account_->Operate(io, oid, &op, deadline);
  if (r < 0) return Status::FromRados(r, "read " + oid);
  BodyMeta meta;
  Status s = Decode(meta_bl.to_str(), &meta);
  if (!s.ok()) return Status::Corrupt(oid + ": " + s.message());
  if (offset >= meta.size) {
    out->clear();
    return Status::OK();
  }
  uint64_t end = length == 0 ? meta.size : std::min(meta.size, offset + length);
  out->assign(head_bl.c_str(), head_bl.length());
  if (meta.chunks > 1) {
    out->resize(std::min<uint64_t>(out->size(), end - offset));
    Status rs = ReadObjects(io, &account_->op_log(), guid, meta, offset + out->size(), end, deadline, out);
    if (!rs.ok()) return rs.code() == Code::kCorrupt ? Status::Corrupt(oid + ": " + rs.message()) : rs;
  }
  if (out->size() != end - offset)
    return Status::Corrupt(oid + ": read " + std::to_string(out->size()) + " bytes, expected " +
                           std::to_string(end - offset));
  if (offset == 0 && end == meta.size && BodyChecksum(*out) != meta.xxh3)
    return Status::Corrupt(oid + ": XXH3 checksum mismatch");
  return Status::OK();
}

void MessageStore::ReadMany(const std::vector<Guid>& guids, std::vector<std::string>* out,
                            std::vector<Status>* statuses) {
  BodyReads(account_, guids).Collect(out, statuses);
}

BodyReads::BodyReads(Account* account, const std::vector<Guid>& guids)
    : account_(account),
      guids_(guids),
      deadline_(account->deadline()),
      issued_(std::chrono::steady_clock::now()),
      reads_(guids.size()) {
  for (size_t i = 0; i < guids_.size(); i++) {
    librados::ObjectReadOperation op;
    op.getxattr(keys::kBodyMetaAttr, &reads_[i].meta_bl, &reads_[i].meta_r);
    op.read(0, 0, &reads_[i].data_bl, &reads_[i].read_r);
    reads_[i].completion = waiter_.NewCompletion();
    account_->mail_io().aio_operate(keys::BodyObject(guids_[i]), reads_[i].completion.get(), &op, nullptr);
  }
}

BodyReads::~BodyReads() {
  if (collected_) return;
  for (HeadRead& read : reads_) read.completion->wait_for_complete_and_cb();
}

void BodyReads::Collect(std::vector<std::string>* out, std::vector<Status>* statuses) {
  librados::IoCtx& io = account_->mail_io();
  collected_ = true;
  out->assign(guids_.size(), std::string());
  statuses->assign(guids_.size(), Status::OK());
  for (size_t i = 0; i < guids_.size(); i++) {
    const std::string oid = keys::BodyObject(guids_[i]);
    int r = waiter_.Wait(io, reads_[i].completion, deadline_);
    account_->op_log().Add(OpType::kRead, oid, reads_[i].data_bl.length(), r, issued_);
    if (r < 0) {
      (*statuses)[i] = Status::FromRados(r, "read " + oid);
      continue;
    }
    BodyMeta meta;
    Status s = Decode(reads_[i].meta_bl.to_str(), &meta);
    if (!s.ok()) {
      (*statuses)[i] = Status::Corrupt(oid + ": " + s.message());
    } else if (meta.chunks > 1) {
      // Rare: a large body in a batch takes the ordinary ranged path.
      (*statuses)[i] = MessageStore(account_).Read(guids_[i], 0, 0, &(*out)[i]);
    } else {
      (*out)[i] = reads_[i].data_bl.to_str();
      if ((*out)[i].size() != meta.size || BodyChecksum((*out)[i]) != meta.xxh3)
        (*statuses)[i] = Status::Corrupt(oid + ": XXH3 checksum mismatch");
    }
  }
}

Status MessageStore::Stat(const Guid& guid, BodyMeta* meta, BodyRef* ref) {
  const std::string oid = keys::BodyObject(guid);
  std::map<std::string, librados::bufferlist> attrs;
  librados::ObjectReadOperation op;
  int attrs_r = 0;
  op.getxattrs(&attrs, &attrs_r);
  int r = account_->Operate(account_->mail_io(), oid, &op);
  if (r < 0) return Status::FromRados(r, "stat " + oid);
  Status s = Decode(attrs[keys::kBodyMetaAttr].to_str(), meta);
  if (s.ok()) s = Decode(attrs[keys::kBodyRefAttr].to_str(), ref);
  if (!s.ok()) return Status::Corrupt(oid + ": " + s.message());
  return Status::OK();
}

Status MessageStore::AddRef(const Guid& guid) {
  std::vector<Status> statuses;
  ChangeRefs({guid}, +1, &statuses);
  return statuses[0];
}

Status MessageStore::Unref(const Guid& guid) {
  std::vector<Status> statuses;
  ChangeRefs({guid}, -1, &statuses);
  return statuses[0];
}

void MessageStore::ChangeRefs(const std::vector<Guid>& guids, int delta, std::vector<Status>* statuses) {
  librados::IoCtx& io = account_->mail_io();
  struct Pending {
    size_t index;
    std::string oid;
    AioCompletionPtr completion;
    librados::bufferlist ref_bl;
    int ref_r = 0;
  };
  statuses->assign(guids.size(), Status::OK());
  std::vector<size_t> todo(guids.size());
  for (size_t i = 0; i < guids.size(); i++) todo[i] = i;
  AioWaiter waiter;
  const Deadline deadline = account_->deadline();
  RetryPolicy retry(deadline);
  for (unsigned attempt = 1; !todo.empty(); attempt++) {
    auto issued = std::chrono::steady_clock::now();
    std::vector<Pending> ops(todo.size());
    for (size_t j = 0; j < todo.size(); j++) {
      ops[j].index = todo[j];
      ops[j].oid = keys::BodyObject(guids[todo[j]]);
      ops[j].completion = waiter.NewCompletion();
      librados::ObjectReadOperation op;
      op.getxattr(keys::kBodyRefAttr, &ops[j].ref_bl, &ops[j].ref_r);
      io.aio_operate(ops[j].oid, ops[j].completion.get(), &op, nullptr);
    }
    for (Pending& p : ops) {
      int r = waiter.Wait(io, p.completion, deadline);
      account_->op_log().Add(OpType::kRead, p.oid, 0, r, issued);
      BodyRef ref;
      Status s = r < 0 ? Status::FromRados(r, "reference " + p.oid) : Decode(p.ref_bl.to_str(), &ref);
      if (!s.ok()) {
        (*statuses)[p.index] = s.code() == Code::kCorrupt ? Status::Corrupt(p.oid + ": " + s.message()) : s;
        p.completion.reset();
        continue;
      }
      // A count of zero is a released body that gc has not reclaimed yet
      // (its grace protects sessions still showing the message): a new
      // reference takes it back. The body is never removed here; the
      // guard on the reference bytes orders this against gc's removal.
      const uint32_t count = delta > 0 ? ref.count + 1 : (ref.count > 0 ? ref.count - 1 : 0);
      librados::ObjectWriteOperation op;
      op.cmpxattr(keys::kBodyRefAttr, LIBRADOS_CMPXATTR_OP_EQ, p.ref_bl);
      op.setxattr(keys::kBodyRefAttr, ToBufferlist(Encode(BodyRef{count, Now()})));
      p.completion = waiter.NewCompletion();
      io.aio_operate(p.oid, p.completion.get(), &op);
    }
    todo.clear();
    issued = std::chrono::steady_clock::now();
    for (Pending& p : ops) {
      if (!p.completion) continue;
      int r = waiter.Wait(io, p.completion, deadline);
      account_->op_log().Add(OpType::kWrite, p.oid, 0, r, issued);
      if (r == -ECANCELED) {
        todo.push_back(p.index);
      } else if (r < 0) {
        (*statuses)[p.index] = Status::FromRadosWrite(r, "reference " + p.oid);
      }
    }
    if (!todo.empty() && !retry.Backoff(attempt)) {
      for (size_t i : todo)
        (*statuses)[i] =
            Status::Conflict("reference " + keys::BodyObject(guids[i]) + ": too much contention");
      return;
    }
  }
}

Status MessageStore::RemoveIfUnchanged(const Guid& guid, const BodyRef& seen) {
  const std::string oid = keys::BodyObject(guid);
  librados::ObjectWriteOperation op;
  op.cmpxattr(keys::kBodyRefAttr, LIBRADOS_CMPXATTR_OP_EQ, ToBufferlist(Encode(seen)));
  op.remove();
  int r = account_->mail_io().operate(oid, &op);
  if (r == -ECANCELED) return Status::Conflict(oid + ": reference changed");
  return r < 0 ? Status::FromRados(r, "remove " + oid) : Status::OK();
}

Status MessageStore::RemoveChunks(const Guid& guid, uint32_t chunks) {
  std::vector<std::pair<std::string, AioCompletionPtr>> removes;
  for (uint32_t i = 1; i < chunks; i++) {
    removes.emplace_back(keys::ChunkObject(guid, i), NewAioCompletion());
    account_->mail_io().aio_remove(removes.back().first, removes.back().second.get());
  }
  Status status;
  for (auto& [oid, completion] : removes) {
    int r = WaitFor(completion);
    if (r < 0 && r != -ENOENT && status.ok()) status = Status::FromRados(r, "remove " + oid);
  }
  return status;
}

BodyWriter::BodyWriter(Account* account, const Guid& guid)
    : account_(account),
      guid_(guid),
      chunk_size_(account->config().stripe_size),
      hash_(XXH3_createState(), XXH3_freeState) {
  XXH3_64bits_reset(hash_.get());
}

BodyWriter::~BodyWriter() {
  if (finished_) return;
  // Abandoned: wait for pieces still in flight, then remove every chunk
  // written so nothing is left for gc (whatever a failure here leaves, gc
  // reclaims as chunks without a head).
  (void)WaitInFlight(0);
  (void)MessageStore(account_).RemoveChunks(guid_, ChunksWritten());
}

uint32_t BodyWriter::ChunksWritten() const {
  const uint64_t sent = piece_start_ > chunk_size_ ? piece_start_ : 0;
  return static_cast<uint32_t>((sent + chunk_size_ - 1) / chunk_size_);
}

Status BodyWriter::Append(std::string_view data) {
  XXH3_64bits_update(hash_.get(), data.data(), data.size());
  while (!data.empty()) {
    size_t take;
    if (size_ < chunk_size_) {
      if (head_.empty()) head_.reserve(chunk_size_);
      take = std::min<uint64_t>(data.size(), chunk_size_ - size_);
      head_.append(data.data(), take);
      piece_start_ = size_ + take;
    } else {
      // A piece never crosses a chunk boundary: it is one write of one
      // chunk object.
      const uint64_t in_chunk = (size_ % chunk_size_);
      take = std::min<uint64_t>({data.size(), chunk_size_ - in_chunk, kPieceSize - piece_.length()});
      piece_.append(data.data(), take);
      if (piece_.length() == kPieceSize || (size_ + take) % chunk_size_ == 0) {
        size_ += take;
        data.remove_prefix(take);
        Status s = FlushPiece();
        if (!s.ok()) return s;
        continue;
      }
    }
    size_ += take;
    data.remove_prefix(take);
  }
  return Status::OK();
}

Status BodyWriter::FlushPiece() {
  Status s = WaitInFlight(kMaxPiecesInFlight - 1);
  if (!s.ok()) return s;
  if (piece_start_ == chunk_size_) first_chunk_write_ = std::chrono::steady_clock::now();
  const uint32_t chunk = static_cast<uint32_t>(piece_start_ / chunk_size_);
  InFlight f{waiter_.NewCompletion(), keys::ChunkObject(guid_, chunk), std::chrono::steady_clock::now(),
             std::move(piece_)};
  piece_.clear();
  account_->mail_io().aio_write(f.oid, f.completion.get(), f.data, f.data.length(),
                                piece_start_ % chunk_size_);
  piece_start_ += f.data.length();
  in_flight_.push_back(std::move(f));
  return Status::OK();
}

Status BodyWriter::WaitInFlight(size_t keep) {
  Status status;
  while (in_flight_.size() > keep) {
    const InFlight& f = in_flight_.front();
    int r = waiter_.Wait(account_->mail_io(), f.completion, account_->deadline());
    account_->op_log().Add(OpType::kWrite, f.oid, f.data.length(), r, f.issued);
    if (r < 0 && status.ok()) status = Status::FromRados(r, "write chunk of " + keys::BodyObject(guid_));
    in_flight_.erase(in_flight_.begin());
  }
  return status;
}

Status BodyWriter::Finish(const BodyMeta& meta_in) {
  if (piece_.length() > 0) {
    Status s = FlushPiece();
    if (!s.ok()) return s;
  }
  Status s = WaitInFlight(0);
  if (!s.ok()) return s;
  const auto grace = std::chrono::seconds(account_->config().gc_grace_seconds);
  if (size_ > chunk_size_ && std::chrono::steady_clock::now() - first_chunk_write_ >= grace / 2)
    return Status::Unavailable("write " + keys::BodyObject(guid_) +
                               ": the body took longer than half of rbd_gc_grace to arrive");
  BodyMeta meta = meta_in;
  meta.size = size_;
  meta.xxh3 = XXH3_64bits_digest(hash_.get());
  meta.chunks = ChunkCount(size_, chunk_size_);
  meta.chunk_size = meta.chunks > 1 ? chunk_size_ : 0;
  librados::ObjectWriteOperation op;
  BuildHeadOp(&op, head_, meta);
  const std::string oid = keys::BodyObject(guid_);
  int r = account_->Operate(account_->mail_io(), oid, &op);
  if (r < 0) return Status::FromRadosWrite(r, "write " + oid);
  finished_ = true;
  return Status::OK();
}

BodyReader::BodyReader(Account* account, const Guid& guid)
    : account_(account), guid_(guid), hash_(XXH3_createState(), XXH3_freeState) {
  XXH3_64bits_reset(hash_.get());
}

Status BodyReader::Open(Account* account, const Guid& guid, std::unique_ptr<BodyReader>* reader) {
  const std::string oid = keys::BodyObject(guid);
  librados::ObjectReadOperation op;
  librados::bufferlist meta_bl, head_bl;
  int meta_r = 0, read_r = 0;
  op.getxattr(keys::kBodyMetaAttr, &meta_bl, &meta_r);
  op.read(0, kFirstWindow, &head_bl, &read_r);
  int r = account->Operate(account->mail_io(), oid, &op);
  if (r < 0) return Status::FromRados(r, "read " + oid);
  std::unique_ptr<BodyReader> br(new BodyReader(account, guid));
  Status s = Decode(meta_bl.to_str(), &br->meta_);
  if (!s.ok()) return Status::Corrupt(oid + ": " + s.message());
  br->window_ = head_bl.to_str();
  if (br->window_.size() > br->meta_.size) return Status::Corrupt(oid + ": longer than its size");
  *reader = std::move(br);
  return Status::OK();
}

std::unique_ptr<BodyReader> BodyReader::FromBytes(std::string bytes) {
  std::unique_ptr<BodyReader> br(new BodyReader(nullptr, Guid()));
  br->meta_.size = bytes.size();
  br->window_ = std::move(bytes);
  br->verify_ = false;
  return br;
}

Status BodyReader::Read(uint64_t offset, uint64_t length, std::string* out) {
  out->clear();
  if (offset >= meta_.size) return Status::OK();
  const uint64_t end = std::min(meta_.size, offset + length);
  if (end <= window_.size()) {
    out->assign(window_, offset, end - offset);
  } else {
    uint64_t from = offset;
    if (ahead_ && ahead_->offset() == offset) {
      Status s = ahead_->Finish(account_->deadline(), out);
      from = ahead_->end();
      ahead_.reset();
      if (!s.ok()) return s;
      if (from > end) {
        out->resize(end - offset);
        from = end;
      }
    }
    ahead_.reset();
    Status s = ReadObjects(account_->mail_io(), &account_->op_log(), guid_, meta_, from, end,
                           account_->deadline(), out);
    if (!s.ok()) return s;
    // Read in order: the next range of the same length is read meanwhile.
    if (offset == next_offset_ && end < meta_.size)
      ahead_ = std::make_unique<RangeRead>(account_->mail_io(), &account_->op_log(), guid_, meta_, end,
                                           std::min(meta_.size, end + (end - offset)));
  }
  next_offset_ = end;
  if (!verify_ || offset > hashed_ || end <= hashed_) return Status::OK();
  // In order from the start: hash what is new.
  XXH3_64bits_update(hash_.get(), out->data() + (hashed_ - offset), end - hashed_);
  hashed_ = end;
  if (hashed_ == meta_.size && XXH3_64bits_digest(hash_.get()) != meta_.xxh3)
    return Status::Corrupt(keys::BodyObject(guid_) + ": XXH3 checksum mismatch");
  return Status::OK();
}

}  // namespace rbd
