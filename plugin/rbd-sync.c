/* Sync between RADOS (the truth) and Dovecot's index (this node's cache).

   Push: a transaction's flag changes and expunges were queued by
   rbd-mail.c instead of being written to the local index; at commit they
   go to RADOS as one guarded op per distinct change.

   Pull: the ops committed in RADOS since the HIGHESTMODSEQ this node last
   saw are read as one snapshot with the state they lead to (or, the first
   time or after a trim, every record of one snapshot) and replayed into
   the index one op per index transaction, so that every message lands on
   its RADOS MODSEQ (doc/design.md, "Sync snapshot and MODSEQs"). Every
   RADOS op of a sync runs before it locks the index: the lock is shared
   by every session of the node on this mailbox, and a holder waiting for
   the cluster would make them all wait, past their own commands'
   deadlines, until its own ran out. The index
   is only ever written here, so its MODSEQs are the cluster's and the same
   on every node; an index that disagrees with RADOS on UIDVALIDITY or the
   mailbox GUID is rebuilt from the records. */

#include "lib.h"
#include "array.h"
#include "bsearch-insert-pos.h"
#include "mail-index-modseq.h"
#include "mail-index-private.h"
#include "mail-index-transaction-private.h"
#include "mail-transaction-log-private.h"
#include "mailbox-recent-flags.h"
#include "sort.h"
#include "rbd-mail-storage.h"

/* What the local index reflects, kept in its "rbd" header extension. */
struct rbd_sync_header {
	guid_128_t mailbox_guid;
	uint32_t uidvalidity;
	uint32_t unused;
	uint64_t highest_modseq;
};

struct rbd_sync_context {
	struct rbd_mailbox *mbox;
	struct mail_index_sync_ctx *index_sync_ctx;
	struct mail_index_view *sync_view;
	struct mail_index_transaction *trans;
	uint32_t next_uid;
	/* dsync changed the UIDVALIDITY of the (empty) mailbox: the cache
	   is reset in place. */
	bool uidvalidity_changed;
	/* A change read from the cluster does not apply to the cache, which
	   only a bug can cause: the cache is retired (rbd_sync_retire). */
	bool disagrees;
	/* The cache is being rebuilt: every record is appended anew. */
	bool reset;
	/* Another process of this node brought the cache past this sync's
	   snapshot while the index was unlocked between two commits. */
	bool overtaken;
	/* The cache was built from the records alone. */
	bool built_from_records;
	/* The cache's transaction log cannot tell which expunges happened
	   after which MODSEQ (see rbd_sync_forget_history): it was built from
	   the records, or brought forward from them because its position was
	   trimmed from the cluster's change log. Only then: the rotated log
	   is unlinked, under the other processes of this node that may still
	   read it, and doing that at every full sync made one of them panic
	   in the fault checker (mail_index_write: prev_file_seq). */
	bool forget_history;
	/* UIDs claimed as \Recent, kept by rbd_sync() across a reset. */
	ARRAY_TYPE(seq_range) *claimed;
	/* The records a cache brought forward in place took from the
	   snapshot, changed after its old position: the MODSEQs they must
	   read (rbd_sync_even_out). */
	ARRAY(struct rbd_sync_target) caught_up;
};

struct rbd_sync_target {
	uint32_t uid;
	uint64_t modseq;
};

/* Every record of one snapshot (rbd_msgs_load_all). */
struct rbd_snapshot {
	struct rbd_records *records;
	struct rbd_index_status status;
	/* Every keyword name the snapshot defines, in the order they were
	   first set, valid until the next snapshot on the index handle. */
	const char *const *keyword_names;
	size_t keyword_count;
};

/* What a sync does to the cache. */
enum rbd_sync_mode {
	/* Replays the changes since the MODSEQ the cache reflects. */
	RBD_SYNC_CHANGES,
	/* Brings the cache to every record of a snapshot. */
	RBD_SYNC_FULL,
	/* Empties the cache, then appends every record of a snapshot. */
	RBD_SYNC_RESET,
};

/* What a sync read from RADOS before it locked the index. */
struct rbd_sync_read {
	/* The cache's header when the read began: only a cluster whose
	   mailbox went back can be behind it. */
	struct rbd_sync_header hdr;
	bool have_hdr;
	/* The changes since hdr.highest_modseq; NULL when the snapshot
	   holds every record instead. */
	struct rbd_changes *changes;
	struct rbd_snapshot snap;
	struct rbd_index_status status;
	/* The change log no longer reaches hdr.highest_modseq. */
	bool resync;
};

void rbd_sync_register_ext(struct rbd_mailbox *mbox)
{
	mbox->rbd_ext_id = mail_index_ext_register(
	        mbox->box.index, "rbd", sizeof(struct rbd_sync_header), 0, 0);
	mbox->guid_ext_id = mail_index_ext_register(mbox->box.index, "guid", 0,
	                                            GUID_128_SIZE, 1);
	mbox->msg_ext_id = mail_index_ext_register(
	        mbox->box.index, "rbd-msg", 0, sizeof(struct rbd_msg_ext),
	        sizeof(uint64_t));
}

static void rbd_sync_header_write(struct rbd_mailbox *mbox,
                                  struct mail_index_transaction *trans,
                                  const struct rbd_index_status *status)
{
	struct rbd_sync_header hdr;

	i_zero(&hdr);
	guid_128_copy(hdr.mailbox_guid, mbox->guid);
	hdr.uidvalidity = status->uidvalidity;
	hdr.highest_modseq = status->highest_modseq;
	mail_index_update_header_ext(trans, mbox->rbd_ext_id, 0, &hdr,
	                             sizeof(hdr));
}

/* The cache's "rbd" header, or FALSE if it has none (a new cache, or one
   written before the header existed). */
static bool rbd_sync_header_get(struct rbd_mailbox *mbox,
                                struct mail_index_view *view,
                                struct rbd_sync_header *hdr_r)
{
	const void *data;
	size_t size;

	i_zero(hdr_r);
	mail_index_get_header_ext(view, mbox->rbd_ext_id, &data, &size);
	if (size != sizeof(*hdr_r))
		return FALSE;
	memcpy(hdr_r, data, sizeof(*hdr_r));
	return TRUE;
}

/* A cache synced to a MODSEQ the cluster never reached holds changes of
   some other state of the mailbox, and Dovecot never lowers an index's
   MODSEQs (even a reset starts its log at the old HIGHESTMODSEQ): only new
   files can follow the cluster from there. */
static bool rbd_sync_cache_ahead(const struct rbd_sync_header *hdr,
                                 const struct rbd_index_status *status)
{
	return hdr->highest_modseq > status->highest_modseq;
}

enum rbd_cache_state rbd_sync_cache_state(struct rbd_mailbox *mbox,
                                          struct mail_index_view *view,
                                          const struct rbd_index_status *status)
{
	const struct mail_index_header *idx_hdr = mail_index_get_header(view);
	struct rbd_sync_header hdr;

	if (mail_index_is_deleted(mail_index_view_get_index(view)))
		return RBD_CACHE_STALE;
	if (!rbd_sync_header_get(mbox, view, &hdr)) {
		return idx_hdr->messages_count == 0 &&
		                       idx_hdr->uid_validity == 0
		               ? RBD_CACHE_EMPTY
		               : RBD_CACHE_STALE;
	}
	/* Dovecot's own HIGHESTMODSEQ may also have run ahead: a cache reset
	   in place over another mailbox, or one that counted local changes
	   the cluster never saw. It would report a HIGHESTMODSEQ no other
	   node has, so a new open rebuilds it too. */
	if (!guid_128_equals(hdr.mailbox_guid, mbox->guid) ||
	    hdr.uidvalidity != idx_hdr->uid_validity ||
	    hdr.uidvalidity != status->uidvalidity ||
	    rbd_sync_cache_ahead(&hdr, status) ||
	    mail_index_modseq_get_highest(view) > status->highest_modseq)
		return RBD_CACHE_STALE;
	return RBD_CACHE_CURRENT;
}

static int rbd_uid_msg_cmp(const uint32_t *uid, const struct rbd_msg *msg)
{
	return *uid < msg->uid ? -1 : (*uid > msg->uid ? 1 : 0);
}

static void rbd_msg_ext_fill(struct rbd_msg_ext *ext,
                             const struct rbd_record *rec)
{
	i_zero(ext);
	memcpy(ext->guid, rec->guid, sizeof(ext->guid));
	ext->physical_size = rec->physical_size;
	ext->virtual_size = rec->virtual_size;
	ext->received_date = rec->received_date;
	ext->save_date = rec->save_date;
	if (rec->inline_body != 0)
		ext->flags |= RBD_MSG_EXT_INLINE_BODY;
	if (rec->guid_text != NULL)
		ext->flags |= RBD_MSG_EXT_GUID_TEXT;
	if (rec->pop3_uidl != NULL)
		ext->flags |= RBD_MSG_EXT_POP3_UIDL;
}

static void rbd_msg_fill(struct rbd_mailbox *mbox, struct rbd_msg *msg,
                         const struct rbd_record *rec)
{
	msg->uid = rec->uid;
	rbd_msg_ext_fill(&msg->ext, rec);
	/* Listing again must not copy the same strings again. */
	if (null_strcmp(msg->pop3_uidl, rec->pop3_uidl) != 0)
		msg->pop3_uidl = p_strdup(mbox->msg_pool, rec->pop3_uidl);
	if (null_strcmp(msg->guid_text, rec->guid_text) != 0)
		msg->guid_text = p_strdup(mbox->msg_pool, rec->guid_text);
}

/* Keeps only what the index extension cannot hold (a record's strings),
   unless a cache older than the extension needs every record
   (rbd_mailbox_keep_all_msgs): a session that listed a million records
   would otherwise keep about 90 MB of them for its whole life. */
static void rbd_msgs_update(struct rbd_mailbox *mbox,
                            const struct rbd_record *rec)
{
	struct rbd_msg *msg;
	unsigned int idx;

	if (!mbox->msgs_all && rec->guid_text == NULL && rec->pop3_uidl == NULL)
		return;
	if (array_bsearch_insert_pos(&mbox->msgs, &rec->uid, rbd_uid_msg_cmp,
	                             &idx))
		msg = array_idx_modifiable(&mbox->msgs, idx);
	else
		msg = array_insert_space(&mbox->msgs, idx);
	rbd_msg_fill(mbox, msg, rec);
}

static void rbd_snapshot_free(struct rbd_snapshot *snap)
{
	rbd_records_free(&snap->records);
}

/* Every record of the mailbox at one state (rbd_index_list_all), in UID
   order, updating mbox->msgs; kept in snap_r when not NULL. Entries RADOS
   no longer has stay: a view may still show their messages. */
static int rbd_msgs_load_all(struct rbd_mailbox *mbox,
                             struct rbd_snapshot *snap_r)
{
	struct rbd_snapshot snap;
	struct rbd_error err;
	size_t i;

	i_zero(&snap);
	if (rbd_index_list_all(mbox->index, 0, &snap.records, &snap.status,
	                       snap_r == NULL ? NULL : &snap.keyword_names,
	                       &snap.keyword_count, &err) != RBD_OK) {
		/* Still stale: a miss after a failed listing (the cluster is
		   away) is a temporary error again, never an expunged mail. */
		rbd_storage_set_error(mbox->box.storage, &err);
		return -1;
	}
	for (i = 0; i < snap.records->count; i++)
		rbd_msgs_update(mbox, &snap.records->records[i]);
	mbox->msgs_stale = FALSE;
	/* What a warm cache must make rare: every record read from RADOS. */
	e_debug(event_create_passthrough(mbox->box.event)
	                ->set_name("rbd_records_listed")
	                ->add_int("records", snap.records->count)
	                ->event(),
	        "rbd: listed %zu records", snap.records->count);
	if (snap_r != NULL)
		*snap_r = snap;
	else
		rbd_snapshot_free(&snap);
	return 0;
}

void rbd_mailbox_keep_all_msgs(struct rbd_mailbox *mbox)
{
	if (mbox->msgs_all)
		return;
	mbox->msgs_all = TRUE;
	mbox->msgs_stale = TRUE;
}

int rbd_mailbox_msg(struct rbd_mailbox *mbox, uint32_t uid,
                    const struct rbd_msg **msg_r)
{
	*msg_r = array_bsearch(&mbox->msgs, &uid, rbd_uid_msg_cmp);
	if (*msg_r == NULL && mbox->msgs_stale) {
		/* Another process (or an incremental sync from the index
		   cache on disk) brought the message into the view: learn
		   every record once rather than one per miss. */
		if (rbd_storage_unavailable(mbox->storage) ||
		    rbd_msgs_load_all(mbox, NULL) < 0)
			return -1;
		*msg_r = array_bsearch(&mbox->msgs, &uid, rbd_uid_msg_cmp);
	}
	return *msg_r == NULL ? 0 : 1;
}

/* \Recent across nodes (doc/design.md): a message is \Recent in the one
   read-write session, on any node, whose sync claims it in RADOS first
   (rbd_index_claim_recent). Dovecot's MAIL_INDEX_SYNC_FLAG_DROP_RECENT only
   moves the index header's first_recent_uid past what a read-write sync
   saw; marking the messages is the storage's job (as in mdbox's sync),
   done here for the claimed ones only. The header follows the cluster's
   first recent UID in every sync, so read-only sessions and STATUS on this
   node count as \Recent exactly the messages nobody has claimed yet, and
   never one claimed on another node. */

/* A read-write session (MAILBOX_FLAG_DROP_RECENT) claims the messages up
   to the UIDNEXT of the state it read, all of which the sync brings into
   the index (or another process of this node did); the claimed UIDs go to
   `claimed` for rbd_sync_mark_recent. Nothing is written when the state
   shows nothing unclaimed. *first_recent_r: the cluster's first recent UID
   after the claim. */
static int rbd_sync_claim_recent(struct rbd_mailbox *mbox,
                                 const struct rbd_index_status *status,
                                 ARRAY_TYPE(seq_range) *claimed,
                                 uint32_t *first_recent_r)
{
	struct rbd_error err;
	uint32_t first, end;

	*first_recent_r = status->first_recent_uid;
	if ((mbox->box.flags & MAILBOX_FLAG_DROP_RECENT) == 0 ||
	    status->first_recent_uid >= status->uidnext)
		return 0;
	if (rbd_index_claim_recent(mbox->index, status->uidnext, &first, &end,
	                           &err) != RBD_OK) {
		rbd_storage_set_error(mbox->box.storage, &err);
		return -1;
	}
	if (first < end)
		seq_range_array_add_range(claimed, first, end - 1);
	*first_recent_r = end;
	return 0;
}

/* The header takes the cluster's first recent UID, which only grows,
   capped at the index's next UID as Dovecot requires (a reset index starts
   again from 1). */
static void rbd_sync_set_first_recent(struct rbd_sync_context *ctx,
                                      uint32_t first_recent, uint32_t next_uid)
{
	first_recent = I_MIN(first_recent, next_uid);
	/* Never lowered (Dovecot logs that as an error): another process of
	   this node may have synced the header past this sync's snapshot,
	   and a read-write sync moves it on to next_uid by itself. Only a
	   cache built anew starts again from the cluster's value. */
	if (ctx->built_from_records ||
	    first_recent >
	            mail_index_get_header(ctx->sync_view)->first_recent_uid) {
		mail_index_update_header(
		        ctx->trans,
		        offsetof(struct mail_index_header, first_recent_uid),
		        &first_recent, sizeof(first_recent), FALSE);
	}
}

/* Once the sync is committed, the messages this session claimed are
   \Recent in it (those expunged meanwhile are simply absent). */
static void rbd_sync_mark_recent(struct rbd_mailbox *mbox,
                                 ARRAY_TYPE(seq_range) *claimed)
{
	struct mail_index_view *view;
	const struct seq_range *range;
	uint32_t seq1, seq2;

	if (array_count(claimed) == 0)
		return;
	view = mail_index_view_open(mbox->box.index);
	array_foreach(claimed, range)
	{
		if (mail_index_lookup_seq_range(view, range->seq1, range->seq2,
		                                &seq1, &seq2))
			mailbox_recent_flags_set_seqs(&mbox->box, view, seq1,
			                              seq2);
	}
	mail_index_view_close(&view);
	array_clear(claimed);
}

static int rbd_sync_begin(struct rbd_sync_context *ctx)
{
	struct mailbox *box = &ctx->mbox->box;

	if (mail_index_sync_begin(box->index, &ctx->index_sync_ctx,
	                          &ctx->sync_view, &ctx->trans,
	                          index_storage_get_sync_flags(box)) < 0) {
		mailbox_set_index_error(box);
		return -1;
	}
	ctx->next_uid = mail_index_get_header(ctx->sync_view)->next_uid;
	return 0;
}

/* QRESYNC's VANISHED comes from the local transaction log: Dovecot reports
   the expunges logged after the client's MODSEQ, and falls back to "every
   UID in the client's range that no longer exists" only when the log does
   not reach back that far. A cache built from the records alone has no
   expunge history, yet its first log starts at MODSEQ 1 and would claim to
   cover every older MODSEQ, silently under-reporting VANISHED. A cache
   brought forward from the records (its position was trimmed from the
   cluster's change log) logs the expunges it missed at its own old
   HIGHESTMODSEQ, below MODSEQs a client may have seen on another node, and
   never logs the messages it never saw at all. So such a sync has the log
   rotated at commit (Dovecot's own rotation, which starts the new log at
   the index's HIGHESTMODSEQ) and the old log dropped: older MODSEQs then
   take the fallback, which may report more, never fewer. */
static void rbd_sync_forget_history(struct mail_index *index)
{
	struct mail_transaction_log_file *head = index->log->head;

	if (head->need_rotate == NULL)
		head->need_rotate =
		        i_strdup("rbd: cache built from the records");
}

static void rbd_sync_drop_rotated_log(struct rbd_mailbox *mbox)
{
	const char *path = mbox->box.index->log->filepath2;

	if (path != NULL && unlink(path) < 0 && errno != ENOENT)
		mailbox_set_critical(&mbox->box, "unlink(%s) failed: %m", path);
}

/* The rotated log is dropped only if this commit rotated: Dovecot
   rotates only a fully synced index, and then writes dovecot.index to
   point past it. Otherwise the request stays on the log, which may then
   rotate at some later commit that does not rewrite dovecot.index; the
   .log.2 of the moment is the one dovecot.index still points to, and
   unlinking it made the node's next open of the mailbox fail ("Missing
   middle file", fault checker seed 73496). */
static int rbd_sync_commit(struct rbd_sync_context *ctx)
{
	struct mail_index *index = ctx->mbox->box.index;
	struct mail_index_sync_rec sync_rec;
	uint32_t head_seq;

	/* Nothing else writes this index, but the sync must be drained. */
	while (mail_index_sync_next(ctx->index_sync_ctx, &sync_rec))
		;
	if (ctx->forget_history)
		rbd_sync_forget_history(index);
	head_seq = index->log->head->hdr.file_seq;
	if (mail_index_sync_commit(&ctx->index_sync_ctx) < 0) {
		mailbox_set_index_error(&ctx->mbox->box);
		return -1;
	}
	if (ctx->forget_history && index->log->head->hdr.file_seq != head_seq)
		rbd_sync_drop_rotated_log(ctx->mbox);
	return 0;
}

static void rbd_sync_keywords_update(struct rbd_sync_context *ctx, uint32_t seq,
                                     const ARRAY_TYPE(keyword_indexes) * idx,
                                     enum modify_type type)
{
	struct mail_keywords *kw;

	if (array_count(idx) == 0)
		return;
	kw = mail_index_keywords_create_from_indexes(ctx->mbox->box.index, idx);
	mail_index_update_keywords(ctx->trans, seq, type, kw);
	mail_index_keywords_unref(&kw);
}

/* dsync takes the GUIDs of expunged messages from the expunge records of
   the index log, and compares a GUID given as text by its 128-bit hash:
   each message keeps that in the index, for its expunge to name it. */
static void rbd_sync_set_guid(struct rbd_sync_context *ctx, uint32_t seq,
                              const struct rbd_record *rec)
{
	guid_128_t guid;

	if (rec->guid_text != NULL)
		mail_generate_guid_128_hash(rec->guid_text, guid);
	else
		memcpy(guid, rec->guid, sizeof(guid));
	mail_index_update_ext(ctx->trans, seq, ctx->mbox->guid_ext_id, guid,
	                      NULL);
}

/* Keeps what rbd-mail.c needs of the message in the index, for as long as
   any view shows it (struct rbd_msg_ext). */
static void rbd_sync_set_msg(struct rbd_sync_context *ctx, uint32_t seq,
                             const struct rbd_record *rec)
{
	struct rbd_msg_ext ext;

	rbd_msg_ext_fill(&ext, rec);
	mail_index_update_ext(ctx->trans, seq, ctx->mbox->msg_ext_id, &ext,
	                      NULL);
}

/* Both record extensions start with a GUID, never empty once written. A
   cache written before an extension existed gets it from a full sync (see
   rbd_sync_plan). */
static bool rbd_sync_has_ext(struct mail_index_view *view, uint32_t seq,
                             uint32_t ext_id)
{
	const void *data;
	bool expunged;

	mail_index_lookup_ext(view, seq, ext_id, &data, &expunged);
	return data != NULL && !guid_128_is_empty(data);
}

static void rbd_sync_expunge(struct rbd_sync_context *ctx, uint32_t seq)
{
	const void *guid;
	bool expunged;

	mail_index_lookup_ext(ctx->sync_view, seq, ctx->mbox->guid_ext_id,
	                      &guid, &expunged);
	if (guid != NULL)
		mail_index_expunge_guid(ctx->trans, seq, guid);
	else
		mail_index_expunge(ctx->trans, seq);
}

/* The index's keyword indexes of `names` (registered if new), sorted. */
static void rbd_sync_keyword_indexes(struct rbd_sync_context *ctx,
                                     const char *const *names, size_t count,
                                     ARRAY_TYPE(keyword_indexes) * idx_r)
{
	unsigned int idx;
	size_t i;

	t_array_init(idx_r, count + 1);
	for (i = 0; i < count; i++) {
		mail_index_keyword_lookup_or_create(ctx->mbox->box.index,
		                                    names[i], &idx);
		array_push_back(idx_r, &idx);
	}
	array_sort(idx_r, uint32_cmp);
}

/* Brings message `seq` to `flags` and the `wanted` keywords by its
   differences only (ADD/REMOVE, never REPLACE, nothing for what is already
   so): Dovecot's log then gets at most one flag record and one record per
   keyword added or removed, the records the core counted for the op. The
   keywords are compared as sorted index lists, so the cost grows with the
   keywords the message carries, never with their product. */
static void rbd_sync_set_flags(struct rbd_sync_context *ctx, uint32_t seq,
                               uint8_t flags, const char *const *keywords,
                               size_t keyword_count)
{
	ARRAY_TYPE(keyword_indexes) wanted, current, add, remove;
	const unsigned int *w, *c;
	unsigned int i, j, wn, cn;
	const struct mail_index_record *irec;
	uint8_t old_flags;

	irec = mail_index_lookup(ctx->sync_view, seq);
	old_flags = irec->flags & MAIL_FLAGS_NONRECENT;
	if ((flags & ~old_flags) != 0) {
		mail_index_update_flags(ctx->trans, seq, MODIFY_ADD,
		                        flags & ~old_flags);
	}
	if ((old_flags & ~flags) != 0) {
		mail_index_update_flags(ctx->trans, seq, MODIFY_REMOVE,
		                        old_flags & ~flags);
	}
	rbd_sync_keyword_indexes(ctx, keywords, keyword_count, &wanted);
	t_array_init(&current, keyword_count + 1);
	mail_index_lookup_keywords(ctx->sync_view, seq, &current);
	array_sort(&current, uint32_cmp);
	t_array_init(&add, 4);
	t_array_init(&remove, 4);
	w = array_get(&wanted, &wn);
	c = array_get(&current, &cn);
	for (i = j = 0; i < wn || j < cn;) {
		if (j == cn || (i < wn && w[i] < c[j]))
			array_push_back(&add, &w[i++]);
		else if (i == wn || c[j] < w[i])
			array_push_back(&remove, &c[j++]);
		else {
			i++;
			j++;
		}
	}
	rbd_sync_keywords_update(ctx, seq, &add, MODIFY_ADD);
	rbd_sync_keywords_update(ctx, seq, &remove, MODIFY_REMOVE);
}

/* Appends a record the cache lacks; its flags travel in Dovecot's append
   record, each keyword in one record per keyword. FALSE (with
   ctx->disagrees) when the UID is below the cache's next UID: the
   cache does not belong to this RADOS state. */
static bool rbd_sync_append(struct rbd_sync_context *ctx,
                            const struct rbd_record *rec, uint32_t *seq_r)
{
	ARRAY_TYPE(keyword_indexes) keywords;

	if (rec->uid < ctx->next_uid) {
		ctx->disagrees = TRUE;
		return FALSE;
	}
	mail_index_append(ctx->trans, rec->uid, seq_r);
	rbd_sync_set_guid(ctx, *seq_r, rec);
	rbd_sync_set_msg(ctx, *seq_r, rec);
	ctx->next_uid = rec->uid + 1;
	mail_index_update_flags(ctx->trans, *seq_r, MODIFY_REPLACE,
	                        (enum mail_flags)rec->flags);
	rbd_sync_keyword_indexes(ctx, rec->keywords, rec->keyword_count,
	                         &keywords);
	rbd_sync_keywords_update(ctx, *seq_r, &keywords, MODIFY_ADD);
	return TRUE;
}

/* The cluster HIGHESTMODSEQ the cache reflects now: a sync commits once per
   op, and in between another process of this node may sync the cache
   further (0 for a cache of no or another mailbox). */
static uint64_t rbd_sync_cached_modseq(struct rbd_sync_context *ctx)
{
	struct rbd_sync_header hdr;
	const void *data;
	size_t size;

	mail_index_get_header_ext(ctx->sync_view, ctx->mbox->rbd_ext_id, &data,
	                          &size);
	if (size != sizeof(hdr))
		return 0;
	memcpy(&hdr, data, sizeof(hdr));
	return guid_128_equals(hdr.mailbox_guid, ctx->mbox->guid)
	               ? hdr.highest_modseq
	               : 0;
}

/* Checks that the cache can take `op`: its appends are new to it, the
   messages it changed are there. Nothing is written before this holds, so
   a replay is all of the op or nothing. */
static bool rbd_sync_op_applies(struct rbd_sync_context *ctx,
                                const struct rbd_change *op)
{
	uint32_t seq;
	size_t i;

	for (i = 0; i < op->appended_count; i++) {
		const struct rbd_record *rec = &op->appended[i];

		if (mail_index_lookup_seq(ctx->sync_view, rec->uid, &seq) ||
		    rec->uid < ctx->next_uid)
			return FALSE;
	}
	for (i = 0; i < op->updated_count; i++) {
		if (!mail_index_lookup_seq(ctx->sync_view, op->updated[i].uid,
		                           &seq))
			return FALSE;
	}
	return TRUE;
}

/* Writes exactly one op into ctx->trans and lands the index and every
   message the op touched on the op's MODSEQ, as on every other node.

   Dovecot exports a transaction's records in a fixed order (appends, flag
   updates, keyword updates, MODSEQ updates, expunges), counts one MODSEQ
   per append, flag, keyword and expunge record, and lets a MODSEQ update
   only raise the count and a message's MODSEQ. The core gave the op a step
   of exactly the records a replay of this op alone writes (the changes are
   applied by their differences), so the explicit updates to the op's
   MODSEQ set every touched message and the index to it, never below a
   counted record. An expunge op counts one record, exported last: the
   index is raised to one below the op's MODSEQ first, so the expunge
   lands on it. Returns FALSE, writing nothing, when the op does not apply
   to this cache (ctx->disagrees). */
static bool rbd_sync_replay_op(struct rbd_sync_context *ctx,
                               const struct rbd_change *op)
{
	unsigned int kw_idx;
	bool expunged = FALSE;
	uint32_t seq;
	size_t i;

	if (!rbd_sync_op_applies(ctx, op)) {
		ctx->disagrees = TRUE;
		return FALSE;
	}
	/* Learnt in the order the writer's node learnt them (FLAGS lists
	   them so); the op's records name them sorted. */
	for (i = 0; i < op->defined_count; i++) {
		mail_index_keyword_lookup_or_create(ctx->mbox->box.index,
		                                    op->defined[i], &kw_idx);
	}
	for (i = 0; i < op->appended_count; i++) {
		const struct rbd_record *rec = &op->appended[i];

		(void)rbd_sync_append(ctx, rec, &seq);
		mail_index_update_modseq(ctx->trans, seq, op->modseq);
	}
	for (i = 0; i < op->updated_count; i++) {
		const struct rbd_flag_state *u = &op->updated[i];

		(void)mail_index_lookup_seq(ctx->sync_view, u->uid, &seq);
		rbd_sync_set_flags(ctx, seq, u->flags, u->keywords,
		                   u->keyword_count);
		mail_index_update_modseq(ctx->trans, seq, op->modseq);
	}
	for (i = 0; i < op->expunged_count; i++) {
		if (mail_index_lookup_seq(ctx->sync_view, op->expunged[i],
		                          &seq)) {
			rbd_sync_expunge(ctx, seq);
			expunged = TRUE;
		}
	}
	mail_index_update_highest_modseq(ctx->trans,
	                                 op->modseq - (expunged ? 1 : 0));
	return TRUE;
}

/* dsync may set the UIDVALIDITY of an empty mailbox (rbd_mailbox_update):
   a cache of the old one is reset (ctx->uidvalidity_changed). */
static bool rbd_sync_uidvalidity_changed(struct rbd_sync_context *ctx,
                                         const struct rbd_index_status *status)
{
	uint32_t cached = mail_index_get_header(ctx->sync_view)->uid_validity;

	if (cached == 0 || cached == status->uidvalidity)
		return FALSE;
	ctx->uidvalidity_changed = TRUE;
	return TRUE;
}

/* Keeps mbox->msgs in step with an op the cache has (replayed now, or by
   another process of this node). Expunged messages keep their entries: a
   view may still show them. */
static void rbd_sync_msgs_apply(struct rbd_mailbox *mbox,
                                const struct rbd_change *op)
{
	size_t i;

	for (i = 0; i < op->appended_count; i++)
		rbd_msgs_update(mbox, &op->appended[i]);
}

/* An op that only appended messages without keywords. Consecutive ones
   share one index transaction (a run of deliveries is then one commit and
   one fsync, not one each): Dovecot writes one append record for all of
   them, counted at the first op's MODSEQ at most, and each message's
   explicit update sets its own. */
static bool rbd_sync_plain_append(const struct rbd_change *op)
{
	size_t i;

	if (op->appended_count == 0 || op->updated_count > 0 ||
	    op->expunged_count > 0)
		return FALSE;
	for (i = 0; i < op->appended_count; i++) {
		if (op->appended[i].keyword_count > 0)
			return FALSE;
	}
	return TRUE;
}

/* Only what changed since the MODSEQ this cache reflected when the sync
   read them: the ops of one snapshot, in MODSEQ order, those the cache
   does not have yet each in a local index transaction of its own (see
   rbd_sync_replay_op; only runs of plain appends share one), each
   committed with the header saying which MODSEQ the cache reached.
   Returns 1, or -1 (with ctx->uidvalidity_changed or ctx->disagrees). */
static int rbd_sync_changes(struct rbd_sync_context *ctx,
                            const struct rbd_changes *changes)
{
	struct rbd_mailbox *mbox = ctx->mbox;
	struct rbd_index_status reached = changes->status;
	bool replayed;
	size_t i;
	int ret = 1;

	if (rbd_sync_uidvalidity_changed(ctx, &changes->status))
		return -1;
	for (i = 0; i < changes->op_count && ret > 0; i++) {
		if (changes->ops[i].modseq <= rbd_sync_cached_modseq(ctx)) {
			rbd_sync_msgs_apply(mbox, &changes->ops[i]);
			continue;
		}
		T_BEGIN
		{
			replayed = rbd_sync_replay_op(ctx, &changes->ops[i]);
		}
		T_END;
		if (!replayed) {
			ret = -1;
			break;
		}
		rbd_sync_msgs_apply(mbox, &changes->ops[i]);
		if (i + 1 < changes->op_count &&
		    rbd_sync_plain_append(&changes->ops[i]) &&
		    rbd_sync_plain_append(&changes->ops[i + 1]))
			continue;
		reached.highest_modseq = changes->ops[i].modseq;
		rbd_sync_header_write(mbox, ctx->trans, &reached);
		if (rbd_sync_commit(ctx) < 0 || rbd_sync_begin(ctx) < 0)
			ret = -1;
		else
			mbox->synced = reached;
	}
	return ret;
}

/* Brings one message of the cache to its record (full sync). */
static bool rbd_sync_record(struct rbd_sync_context *ctx,
                            const struct rbd_record *rec, uint64_t old_modseq)
{
	struct rbd_sync_target *target;
	uint32_t seq;

	if (ctx->reset ||
	    !mail_index_lookup_seq(ctx->sync_view, rec->uid, &seq)) {
		if (!rbd_sync_append(ctx, rec, &seq))
			return FALSE;
	} else {
		if (!rbd_sync_has_ext(ctx->sync_view, seq,
		                      ctx->mbox->guid_ext_id))
			rbd_sync_set_guid(ctx, seq, rec);
		if (!rbd_sync_has_ext(ctx->sync_view, seq,
		                      ctx->mbox->msg_ext_id))
			rbd_sync_set_msg(ctx, seq, rec);
		rbd_sync_set_flags(ctx, seq, rec->flags, rec->keywords,
		                   rec->keyword_count);
	}
	mail_index_update_modseq(ctx->trans, seq, rec->modseq);
	/* Also for a cache with no old position: two processes of a node
	   building one cache at once (one between the other's two commits)
	   count a message above its MODSEQ (stress checker, seed 31439:
	   UIDs 1 and 2 both at MODSEQ 4, UID 1's being 3). */
	if (!ctx->reset && rec->modseq > old_modseq) {
		target = array_append_space(&ctx->caught_up);
		target->uid = rec->uid;
		target->modseq = rec->modseq;
	}
	return TRUE;
}

/* Every record of one snapshot: the first sync of a cache, or after the log
   could not bring it forward. Expunges of what RADOS no longer has go
   first, in a transaction of their own (one record, one MODSEQ); then the
   records, in UID order, by their differences, with the keywords
   registered in the snapshot's table order. On a new cache that makes
   every counted record land at or below the MODSEQ of each message it
   touches (the core gave keyword id i a MODSEQ of its own before any
   message could carry it), so each message's explicit MODSEQ update sets
   it exactly. A cache brought forward over several ops at once can count
   a message above its MODSEQ (never below): rbd_sync_even_out() then has
   the cluster give it a new one. Returns 1, or -1 (with
   ctx->uidvalidity_changed or ctx->disagrees). */
static int rbd_sync_full(struct rbd_sync_context *ctx, bool reset,
                         const struct rbd_snapshot *snap)
{
	struct rbd_mailbox *mbox = ctx->mbox;
	const struct rbd_index_status *status = &snap->status;
	ARRAY_TYPE(seq_range) listed;
	unsigned int kw_idx;
	uint32_t seq, uid, messages;
	bool expunged = FALSE;
	uint64_t old_modseq = rbd_sync_cached_modseq(ctx);
	size_t i;
	int ret = 1;

	if (reset) {
		/* The UIDs may now name other messages. */
		p_clear(mbox->msg_pool);
		p_array_init(&mbox->msgs, mbox->msg_pool, 64);
		for (i = 0; i < snap->records->count; i++)
			rbd_msgs_update(mbox, &snap->records->records[i]);
	}
	if (!reset && rbd_sync_uidvalidity_changed(ctx, status))
		return -1;
	if (!reset && rbd_sync_cached_modseq(ctx) > status->highest_modseq) {
		/* The snapshot was read before the cache was locked, and
		   another process of this node has synced the cache past it
		   since: the cache holds messages this snapshot lacks. They
		   are learned on the first miss (rbd_mailbox_msg); they must
		   not be taken for expunged (test_sync_race.py). */
		ctx->overtaken = TRUE;
		return 1;
	}
	if (!reset) {
		/* mbox->msgs keeps expunged messages: the snapshot says
		   what RADOS still has, and the cache has nothing newer. */
		t_array_init(&listed, 64);
		for (i = 0; i < snap->records->count; i++)
			seq_range_array_add(&listed,
			                    snap->records->records[i].uid);
		messages = mail_index_view_get_messages_count(ctx->sync_view);
		for (seq = 1; seq <= messages; seq++) {
			mail_index_lookup_uid(ctx->sync_view, seq, &uid);
			if (!seq_range_exists(&listed, uid)) {
				rbd_sync_expunge(ctx, seq);
				expunged = TRUE;
			}
		}
		if (expunged &&
		    (rbd_sync_commit(ctx) < 0 || rbd_sync_begin(ctx) < 0))
			return -1;
	} else {
		struct mail_index_modseq_header modseq_hdr;

		/* As Dovecot's index rebuild does: the reset drops every
		   extension, so re-introduce the MODSEQ one at once. */
		mail_index_reset(ctx->trans);
		ctx->reset = TRUE;
		i_zero(&modseq_hdr);
		modseq_hdr.highest_modseq = status->highest_modseq;
		mail_index_update_header_ext(ctx->trans,
		                             mbox->box.index->modseq_ext_id, 0,
		                             &modseq_hdr, sizeof(modseq_hdr));
		ctx->next_uid = 1;
	}
	if (reset || mail_index_get_header(ctx->sync_view)->uid_validity == 0) {
		mail_index_update_header(
		        ctx->trans,
		        offsetof(struct mail_index_header, uid_validity),
		        &status->uidvalidity, sizeof(status->uidvalidity),
		        TRUE);
	}
	/* In the order the names were first set (see above). */
	for (i = 0; i < snap->keyword_count; i++)
		mail_index_keyword_lookup_or_create(
		        mbox->box.index, snap->keyword_names[i], &kw_idx);
	for (i = 0; i < snap->records->count && ret > 0; i++)
		T_BEGIN
		{
			if (!rbd_sync_record(ctx, &snap->records->records[i],
			                     old_modseq))
				ret = -1;
		}
	T_END;
	return ret;
}

/* Lands the cache on the snapshot's state: its HIGHESTMODSEQ (where an
   incremental sync already is, op by op), UIDNEXT, and the header saying
   which state the cache reflects. */
static int rbd_sync_finish(struct rbd_sync_context *ctx,
                           const struct rbd_index_status *status)
{
	if (!ctx->reset && (ctx->overtaken || rbd_sync_cached_modseq(ctx) >
	                                              status->highest_modseq)) {
		/* Never take the cache back to an older snapshot. */
		return rbd_sync_commit(ctx) < 0 ? -1 : 1;
	}
	if (status->uidnext > ctx->next_uid) {
		mail_index_update_header(
		        ctx->trans,
		        offsetof(struct mail_index_header, next_uid),
		        &status->uidnext, sizeof(status->uidnext), FALSE);
	}
	mail_index_update_highest_modseq(ctx->trans, status->highest_modseq);
	rbd_sync_header_write(ctx->mbox, ctx->trans, status);
	if (rbd_sync_commit(ctx) < 0)
		return -1;
	ctx->mbox->synced = *status;
	return 1;
}

static int rbd_sync_target_cmp(const struct rbd_sync_target *a,
                               const struct rbd_sync_target *b)
{
	if (a->modseq != b->modseq)
		return a->modseq < b->modseq ? -1 : 1;
	return a->uid < b->uid ? -1 : (a->uid > b->uid ? 1 : 0);
}

/* A cache brought forward in place from behind the log floor counts its
   catch-up records in Dovecot's MODSEQs, one per record, before the
   explicit MODSEQ updates, which can only raise: a message the cluster
   changed just after the cache's old position can land above its MODSEQ,
   and two messages on one they do not share. The op of each message's
   last change is gone from the log, so its MODSEQ cannot be replayed;
   instead the cluster gives such messages new ones, above what this cache
   counted (rbd_index_touch), which every node's next sync, this one's
   first, lands exactly. Messages that shared a MODSEQ (one command changed
   them) share the new one, and only they: every MODSEQ stays one change.
   *touched_r: such an op was committed. */
static void rbd_sync_even_out(struct rbd_sync_context *ctx, bool *touched_r)
{
	struct rbd_mailbox *mbox = ctx->mbox;
	struct mail_index_view *view;
	const struct rbd_sync_target *target;
	ARRAY(struct rbd_sync_target) off;
	ARRAY_TYPE(uint32_t) uids;
	struct rbd_error err;
	uint64_t counted, highest = 0, modseq;
	unsigned int i, count;
	uint32_t seq;

	if (array_count(&ctx->caught_up) == 0)
		return;
	t_array_init(&off, 16);
	view = mail_index_view_open(mbox->box.index);
	array_foreach(&ctx->caught_up, target)
	{
		if (!mail_index_lookup_seq(view, target->uid, &seq))
			continue;
		counted = mail_index_modseq_lookup(view, seq);
		if (counted != target->modseq) {
			array_push_back(&off, target);
			highest = I_MAX(highest, counted);
		}
	}
	mail_index_view_close(&view);
	array_sort(&off, rbd_sync_target_cmp);
	target = array_get(&off, &count);
	t_array_init(&uids, 16);
	for (i = 0; i < count; i++) {
		array_push_back(&uids, &target[i].uid);
		if (i + 1 < count && target[i + 1].modseq == target[i].modseq)
			continue;
		if (rbd_index_touch(mbox->index, array_front(&uids),
		                    array_count(&uids), highest + 1, &modseq,
		                    &err) != RBD_OK) {
			/* They stay above their MODSEQ on this node. */
			e_warning(mbox->box.event,
			          "rbd: messages caught up from behind the change "
			          "log's floor read MODSEQs above the cluster's: %s",
			          err.message);
			return;
		}
		e_debug(mbox->box.event,
		        "rbd: %u messages of MODSEQ %" PRIu64 " caught up from "
		        "behind the change log's floor counted above it: "
		        "given MODSEQ %" PRIu64,
		        array_count(&uids), target[i].modseq, modseq);
		*touched_r = *touched_r || modseq != 0;
		array_clear(&uids);
	}
}

/* What a sync does to the cache `view` shows, whose header it gives in
   *hdr_r (zeroed, *have_hdr_r FALSE, when it has none).

   A GUID names one RADOS mailbox for ever, so a cache of another GUID is
   rebuilt. A new, empty cache needs no reset, only its first full sync.
   The open already rebuilt any cache of another mailbox
   (rbd_mailbox_open): what is left here is dsync's change of GUID (in this
   process) or UIDVALIDITY, made on an empty mailbox whose MODSEQs carry
   over, so a reset in place stays exact. An empty cache of the old GUID
   needs none either: a reset gives the index a new id, which every other
   process of this node holding it logs as corruption. A cache whose
   oldest message has no rbd_msg_ext was written before the extension
   existed: one full sync fills it in for every message. */
static enum rbd_sync_mode rbd_sync_plan(struct rbd_mailbox *mbox,
                                        struct mail_index_view *view,
                                        bool force_full, bool force_reset,
                                        struct rbd_sync_header *hdr_r,
                                        bool *have_hdr_r)
{
	const struct mail_index_header *idx_hdr = mail_index_get_header(view);
	bool have_hdr, same_guid;

	have_hdr = *have_hdr_r = rbd_sync_header_get(mbox, view, hdr_r);
	same_guid = have_hdr && guid_128_equals(hdr_r->mailbox_guid, mbox->guid);
	if (force_reset ||
	    (!have_hdr &&
	     (idx_hdr->messages_count > 0 || idx_hdr->uid_validity != 0)) ||
	    (have_hdr && hdr_r->uidvalidity != idx_hdr->uid_validity) ||
	    (have_hdr && !same_guid && idx_hdr->messages_count > 0))
		return RBD_SYNC_RESET;
	if (force_full || !same_guid ||
	    (idx_hdr->messages_count > 0 &&
	     !rbd_sync_has_ext(view, 1, mbox->msg_ext_id)))
		return RBD_SYNC_FULL;
	return RBD_SYNC_CHANGES;
}

static void rbd_sync_read_free(struct rbd_sync_read *read)
{
	if (read->changes != NULL)
		rbd_changes_free(&read->changes);
	rbd_snapshot_free(&read->snap);
}

/* Reads what the sync of the cache as it is now needs, without locking
   it: the changes since its MODSEQ, or (for a full sync, or when the
   change log no longer reaches back that far) every record. */
static int rbd_sync_read(struct rbd_mailbox *mbox, bool force_full,
                         bool force_reset, struct rbd_sync_read *read_r)
{
	struct mail_index_view *view;
	enum rbd_sync_mode mode;
	struct rbd_error err;

	i_zero(read_r);
	/* A failure shows again, and is handled, when the sync locks the
	   index. */
	(void)mail_index_refresh(mbox->box.index);
	view = mail_index_view_open(mbox->box.index);
	mode = rbd_sync_plan(mbox, view, force_full, force_reset,
	                     &read_r->hdr, &read_r->have_hdr);
	mail_index_view_close(&view);
	if (mode == RBD_SYNC_CHANGES) {
		if (rbd_index_changes(mbox->index, read_r->hdr.highest_modseq,
		                      &read_r->changes, &err) == RBD_OK) {
			read_r->status = read_r->changes->status;
			return 0;
		}
		if (err.code != RBD_ERR_RESYNC) {
			rbd_storage_set_error(mbox->box.storage, &err);
			return -1;
		}
		read_r->resync = TRUE;
	}
	if (rbd_msgs_load_all(mbox, &read_r->snap) < 0)
		return -1;
	read_r->status = read_r->snap.status;
	return 0;
}

/* Reads from RADOS (rbd_sync_read) and claims \Recent, then locks the
   index and decides again (*mode_r, ctx->built_from_records): another
   process of this node may have synced or replaced the cache meanwhile.
   Changes read since a MODSEQ the cache still reaches fit (those it has
   already are skipped); a snapshot fits any cache, one the cache has
   passed by doing nothing (rbd_sync_full). Otherwise the lock is given
   back and every record read. */
static int rbd_sync_read_locked(struct rbd_sync_context *ctx, bool force_full,
                                bool force_reset, struct rbd_sync_read *read_r,
                                uint32_t *first_recent_r,
                                enum rbd_sync_mode *mode_r)
{
	struct rbd_mailbox *mbox = ctx->mbox;
	struct rbd_sync_header hdr;
	bool have_hdr;

	for (;;) {
		if (rbd_sync_read(mbox, force_full, force_reset, read_r) < 0)
			return -1;
		if (read_r->have_hdr &&
		    rbd_sync_cache_ahead(&read_r->hdr, &read_r->status)) {
			/* The cluster's mailbox went back (its index was
			   recreated): this session's view of it cannot
			   follow, so it ends as for a deleted mailbox, and
			   the next open rebuilds the cache. */
			e_warning(mbox->box.event,
			          "rbd: index cache is at MODSEQ %" PRIu64
			          ", the cluster at %" PRIu64
			          ": closing the mailbox",
			          read_r->hdr.highest_modseq,
			          read_r->status.highest_modseq);
			mailbox_set_deleted(&mbox->box);
			return -1;
		}
		if (rbd_sync_claim_recent(mbox, &read_r->status, ctx->claimed,
		                          first_recent_r) < 0 ||
		    rbd_sync_begin(ctx) < 0)
			return -1;
		*mode_r = rbd_sync_plan(mbox, ctx->sync_view, force_full,
		                        force_reset, &hdr, &have_hdr);
		ctx->built_from_records =
		        *mode_r == RBD_SYNC_RESET ||
		        !guid_128_equals(hdr.mailbox_guid, mbox->guid);
		if (read_r->changes == NULL ||
		    (*mode_r == RBD_SYNC_CHANGES &&
		     hdr.highest_modseq >= read_r->hdr.highest_modseq))
			return 0;
		mail_index_sync_rollback(&ctx->index_sync_ctx);
		rbd_sync_read_free(read_r);
		force_full = TRUE;
	}
}

/* The cache disagrees with the cluster. A reset in place would count every
   message at the old cache's HIGHESTMODSEQ or above (Dovecot starts even a
   reset index there), not at the cluster's MODSEQs, which every other node
   shows (stress checker in CI, seed 86365: "MODSEQ 7 is on UIDs [6, 7, 8,
   10]"). So the cache is marked deleted, as a DELETE does: every session
   of this node on it ends (IMAP has no way to tell a client that MODSEQs
   changed), and the next open replaces it with a cache built from the
   records (rbd_mailbox_check_cache). */
static void rbd_sync_retire(struct rbd_mailbox *mbox)
{
	struct mail_index_transaction *trans;

	e_warning(mbox->box.event,
	          "rbd: index cache disagrees with the cluster: ending the "
	          "sessions of this node on it, the next open rebuilds it");
	trans = mail_index_transaction_begin(mbox->box.view, 0);
	mail_index_set_deleted(trans);
	if (mail_index_transaction_commit(&trans) < 0)
		mailbox_set_index_error(&mbox->box);
	mailbox_set_deleted(&mbox->box);
}

static int rbd_sync_once(struct rbd_mailbox *mbox, bool force_full,
                         bool force_reset, ARRAY_TYPE(seq_range) *claimed,
                         bool *touched_r)
{
	struct rbd_sync_context ctx;
	struct rbd_sync_read read;
	enum rbd_sync_mode mode;
	uint32_t first_recent;
	int ret;

	i_zero(&ctx);
	ctx.mbox = mbox;
	ctx.claimed = claimed;
	if (rbd_sync_read_locked(&ctx, force_full, force_reset, &read,
	                         &first_recent, &mode) < 0) {
		rbd_sync_read_free(&read);
		return -1;
	}
	/* Grows inside the T_BEGIN of each record: not on the data stack. */
	i_array_init(&ctx.caught_up, 16);

	if (read.changes != NULL) {
		ret = rbd_sync_changes(&ctx, read.changes);
	} else {
		ctx.forget_history = ctx.built_from_records || read.resync;
		ret = rbd_sync_full(&ctx, mode == RBD_SYNC_RESET, &read.snap);
	}
	if (ret >= 0) {
		rbd_sync_set_first_recent(
		        &ctx, first_recent,
		        I_MAX(read.status.uidnext, ctx.next_uid));
		ret = rbd_sync_finish(&ctx, &read.status);
	} else if (ctx.index_sync_ctx != NULL) {
		mail_index_sync_rollback(&ctx.index_sync_ctx);
	}
	if (ret > 0) {
		rbd_sync_mark_recent(mbox, claimed);
		rbd_sync_even_out(&ctx, touched_r);
	}
	rbd_sync_read_free(&read);
	array_free(&ctx.caught_up);
	if (ret < 0 && ctx.disagrees)
		rbd_sync_retire(mbox);
	if (ret < 0)
		return ctx.uidvalidity_changed ? 0 : -1;
	return ret;
}

int rbd_sync(struct rbd_mailbox *mbox, bool force_full)
{
	ARRAY_TYPE(seq_range) claimed;
	bool touched = FALSE;
	int ret;

	if (rbd_mailbox_open_index(mbox) < 0)
		return -1;
	/* The view may gain messages another process synced into the index
	   cache: rbd_mailbox_msg() lists the records again on a miss. */
	mbox->msgs_stale = TRUE;
	mbox->sync_at_close = FALSE;
	i_array_init(&claimed, 4);
	if (array_is_created(&mbox->saves_claimed)) {
		array_append_array(&claimed, &mbox->saves_claimed);
		array_clear(&mbox->saves_claimed);
	}
	ret = rbd_sync_once(mbox, force_full, FALSE, &claimed, &touched);
	if (ret == 0) {
		e_debug(mbox->box.event,
		        "rbd: UIDVALIDITY changed, resetting the index cache");
		ret = rbd_sync_once(mbox, TRUE, TRUE, &claimed, &touched);
	}
	if (ret > 0 && touched) {
		touched = FALSE;
		ret = rbd_sync_once(mbox, FALSE, FALSE, &claimed, &touched);
	}
	array_free(&claimed);
	if (ret < 0)
		return -1;
	mbox->sync_pending = FALSE;
	return 0;
}

struct mailbox_sync_context *
rbd_mailbox_sync_init(struct mailbox *box, enum mailbox_sync_flags flags)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);
	int ret = 0;

	bool wanted;

	if (!box->opened && mailbox_open(box) < 0)
		ret = -1;
	/* A FAST sync (after FETCH, SEARCH) reads the cluster only when
	   Dovecot's own storages would sync theirs: not within
	   MAILBOX_FULL_SYNC_INTERVAL of the last full one (imapc skips its
	   NOOP so too). Another node's change then shows at the next command
	   that is not FAST. What this process changed is always read: the
	   cache learns its own changes only from a sync. */
	wanted = index_mailbox_want_full_sync(box, flags) || mbox->sync_pending;
	/* A rename elsewhere leaves the index readable under its new name: a
	   full sync (NOOP, IDLE, CHECK, SELECT) checks that the name still
	   leads to it, after the sync, whose read of the state usually says
	   so already. A FAST one only reads. */
	if (ret == 0 && wanted)
		ret = rbd_sync(mbox,
		               (flags & MAILBOX_SYNC_FLAG_FORCE_RESYNC) != 0);
	if (ret == 0 && (flags & MAILBOX_SYNC_FLAG_FAST) == 0 &&
	    rbd_mailbox_check_name(mbox) < 0)
		ret = -1;
	if (ret < 0 && box->opened &&
	    mailbox_get_last_mail_error(box) == MAIL_ERROR_NOTFOUND)
		mailbox_set_deleted(box);
	return index_mailbox_sync_init(box, flags, ret < 0);
}

static void rbd_push_conflicts(struct mailbox_transaction_context *t,
                               const uint32_t *uids, size_t count)
{
	uint32_t seq;
	size_t i;

	if (t->itrans->conflict_seqs == NULL)
		return;
	for (i = 0; i < count; i++) {
		if (mail_index_lookup_seq(t->view, uids[i], &seq))
			seq_range_array_add(t->itrans->conflict_seqs, seq);
	}
}

/* A hidden transaction (STORE .SILENT) must not see its own change echoed
   back by the next sync as if another session had made it, so its op is
   replayed into the client's own transaction, exactly as a sync would
   (rbd_sync_replay_op), when the change log since this cache's
   HIGHESTMODSEQ holds that op alone: the cache then held the state the op
   started from. Otherwise the next sync brings it.
   That transaction commits under the index lock, taken here and given back
   (returned) once it is committed, as mdbox commits a save: Dovecot counts
   a transaction's MODSEQs from the index as it is when it commits, and
   without the lock another process of the node could sync this op and
   newer ones first. The transaction then counted the messages above the
   op's MODSEQ and wrote a cache position older than the cache (fault soak,
   seed 1217: MODSEQs differing between nodes, then the cache replaced
   under the node's sessions; test_sync_race.py). NULL if not applied. */
static struct mail_index_sync_ctx *
rbd_push_apply_own(struct mailbox_transaction_context *t,
                   struct rbd_mailbox *mbox, uint64_t modseq)
{
	struct mail_index_view *view = t->box->view;
	struct rbd_sync_context ctx, locked;
	struct rbd_changes *changes;
	struct rbd_error err;
	bool applied = FALSE;

	if (modseq == 0 ||
	    mail_index_modseq_get_highest(view) != mbox->synced.highest_modseq)
		return NULL;
	if (rbd_index_changes(mbox->index, mbox->synced.highest_modseq,
	                      &changes, &err) != RBD_OK)
		return NULL;
	i_zero(&locked);
	locked.mbox = mbox;
	if (changes->op_count == 1 && changes->ops[0].modseq == modseq &&
	    changes->status.uidvalidity == mbox->synced.uidvalidity &&
	    rbd_sync_begin(&locked) == 0) {
		if (rbd_sync_cached_modseq(&locked) ==
		    mbox->synced.highest_modseq) {
			i_zero(&ctx);
			ctx.mbox = mbox;
			ctx.sync_view = view;
			ctx.trans = t->itrans;
			ctx.next_uid = mail_index_get_header(view)->next_uid;
			applied = rbd_sync_replay_op(&ctx, &changes->ops[0]);
		}
		if (applied) {
			rbd_sync_header_write(mbox, t->itrans,
			                      &changes->status);
			mbox->synced = changes->status;
		} else {
			mail_index_sync_rollback(&locked.index_sync_ctx);
		}
	}
	rbd_changes_free(&changes);
	return applied ? locked.index_sync_ctx : NULL;
}

/* Every flag change of the transaction in ONE guarded op, so that the
   transaction takes effect whole or not at all: with an op per change, a
   STORE FLAGS that replaced different flags on two messages could fail on
   its second op after its first had taken effect, and be answered NO. */
static int rbd_push_changes(struct mailbox_transaction_context *t,
                            struct rbd_mailbox *mbox,
                            struct mail_index_sync_ctx **own_sync_r)
{
	struct rbd_transaction_context *rt = RBD_TRANSACTION(t);
	const struct rbd_pending_change *change;
	ARRAY(struct rbd_flag_change) ops;
	ARRAY_TYPE(uint32_t) uids;
	struct seq_range_iter iter;
	struct rbd_flag_change *op;
	struct rbd_error err;
	uint32_t *conflicts, uid;
	size_t conflict_count;
	uint64_t modseq;
	unsigned int n;

	t_array_init(&ops, array_count(&rt->changes));
	array_foreach(&rt->changes, change) {
		t_array_init(&uids, 64);
		seq_range_array_iter_init(&iter, &change->uids);
		n = 0;
		while (seq_range_array_iter_nth(&iter, n++, &uid))
			array_push_back(&uids, &uid);
		op = array_append_space(&ops);
		op->uids = array_get(&uids, &n);
		op->uid_count = n;
		op->update.add_flags = change->add_flags;
		op->update.remove_flags = change->remove_flags;
		op->update.add_keywords = array_get(&change->add_keywords, &n);
		op->update.add_keyword_count = n;
		op->update.remove_keywords =
		        array_get(&change->remove_keywords, &n);
		op->update.remove_keyword_count = n;
		op->update.unchanged_since = t->itrans->max_modseq;
	}
	if (rbd_index_update_flags_of(mbox->index, array_front(&ops),
	                              array_count(&ops), &conflicts,
	                              &conflict_count, &modseq,
	                              &err) != RBD_OK) {
		rbd_mailbox_set_error(mbox, &err);
		return -1;
	}
	/* Not with expunges, which are pushed after this: the index lock
	   must never be held across a RADOS op. */
	if (conflict_count == 0 &&
	    (t->flags & MAILBOX_TRANSACTION_FLAG_HIDE) != 0 &&
	    array_count(&rt->expunges) == 0)
		*own_sync_r = rbd_push_apply_own(t, mbox, modseq);
	rbd_push_conflicts(t, conflicts, conflict_count);
	rbd_uids_free(&conflicts);
	return 0;
}

/* Expunges in RADOS, and tells the storage's sync_notify users (quota,
   which subtracts the sizes it noted at mail_expunge; fts) of the messages
   this op removed: here, once in the cluster, and not when a sync of any
   node later applies the expunge to its cache, as that happens once per
   node. A message another session expunged first is not this one's. */
static int rbd_push_expunges(struct rbd_mailbox *mbox,
                             const ARRAY_TYPE(seq_range) * expunges)
{
	ARRAY_TYPE(uint32_t) uids;
	struct seq_range_iter iter;
	struct rbd_error err;
	unsigned int n = 0;
	uint32_t uid, *removed;
	size_t i, count;

	t_array_init(&uids, 64);
	seq_range_array_iter_init(&iter, expunges);
	while (seq_range_array_iter_nth(&iter, n++, &uid))
		array_push_back(&uids, &uid);
	removed = t_new(uint32_t, array_count(&uids));
	if (rbd_index_expunge(mbox->index, array_front(&uids),
	                      array_count(&uids), removed, &count,
	                      &err) != RBD_OK) {
		rbd_mailbox_set_error(mbox, &err);
		return -1;
	}
	for (i = 0; i < count; i++)
		mailbox_sync_notify(&mbox->box, removed[i],
		                    MAILBOX_SYNC_TYPE_EXPUNGE);
	mailbox_sync_notify(&mbox->box, 0, 0);
	return 0;
}

int rbd_transaction_push(struct mailbox_transaction_context *t,
                         struct mail_index_sync_ctx **own_sync_r)
{
	struct rbd_transaction_context *rt = RBD_TRANSACTION(t);
	struct rbd_mailbox *mbox = RBD_MAILBOX(t->box);
	int ret = 0;

	if (array_count(&rt->changes) == 0 && array_count(&rt->expunges) == 0)
		return 0;
	if (rbd_mailbox_open_index(mbox) < 0)
		return -1;
	mbox->sync_pending = TRUE;
	T_BEGIN
	{
		if (array_count(&rt->changes) > 0 &&
		    rbd_push_changes(t, mbox, own_sync_r) < 0)
			ret = -1;
		if (ret == 0 && array_count(&rt->expunges) > 0 &&
		    rbd_push_expunges(mbox, &rt->expunges) < 0)
			ret = -1;
	}
	T_END;
	return ret;
}
