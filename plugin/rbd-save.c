/* Saving (APPEND, MULTIAPPEND, LMTP delivery, dsync) and the commit of
   saves and copies.

   A saved message is kept in memory while the transaction's bodies in
   memory stay within RBD_SAVE_MEMORY_MAX; beyond that it is streamed to
   its body object as it arrives (rbd_body_writer), so memory stays bounded
   whatever the message's size (doc/design.md, "Streaming bodies and range
   reads"). At commit_pre all the transaction's saves become ONE guarded op
   on the index (small bodies inline, larger ones in memory written first,
   in parallel), and all copies from a source mailbox another one.
   Meanwhile a temporary index record lets the saved mail be read (LMTP
   logs its Message-ID); it is dropped at commit, and the real records
   arrive with their RADOS MODSEQs on the next sync, as imapc does with its
   remote server. */

#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "str.h"
#include "istream.h"
#include "istream-crlf.h"
#include "ostream-private.h"
#include "index-mail.h"
#include "rbd-mail-storage.h"

struct rbd_save_item {
	/* Set for a copy; a save otherwise. */
	struct rbd_mailbox *copy_src;
	uint32_t copy_src_uid;
	/* What the copying session shows of the source, or NULL. */
	const struct rbd_record *copy_src_shown;

	uint32_t seq; /* temporary sequence */
	uint32_t uid; /* wanted (dsync), or 0 */
	guid_128_t guid;
	/* The GUID the saver gave (dsync brings the source's), or NULL. */
	const char *guid_text;
	/* The body in memory, or NULL when it was streamed to `guid`. */
	buffer_t *body;
	/* Passed to rbd_index_append: its reference is the append's. */
	bool appended;
	enum mail_flags flags;
	const char **keywords;
	time_t received_date, save_date;
	uint64_t physical_size, virtual_size;
	const char *pop3_uidl;
};

struct rbd_save_context {
	struct mail_save_context ctx;
	struct rbd_mailbox *mbox;
	struct mail_index_transaction *trans;
	pool_t pool;

	ARRAY(struct rbd_save_item) items;
	unsigned int temp_count;

	/* Bytes of the items' bodies in memory. */
	size_t memory_used;

	/* the message being saved: in `body`, or streamed to `writer` */
	struct istream *input;
	buffer_t *body;
	struct rbd_body_writer *writer;
	guid_128_t guid;
	uoff_t size;
	/* Why the body could not be taken; reported by save_continue. */
	struct rbd_error write_error;
	bool failed : 1;
	bool finished : 1;
	bool too_large : 1;
};

/* Bodies of one transaction kept in memory until commit, at most. What is
   streamed goes to the node's service piece by piece as it arrives (the
   service holds the head and the pieces in flight), so this is what an
   APPEND of any size adds to the imap process. */
#define RBD_SAVE_MEMORY_MAX (1024 * 1024)

struct rbd_body_ostream {
	struct ostream_private ostream;
	struct rbd_save_context *ctx;
};

#define RBD_SAVECTX(s) (container_of(s, struct rbd_save_context, ctx))

struct mail_save_context *rbd_save_alloc(struct mailbox_transaction_context *t)
{
	struct rbd_save_context *ctx;
	pool_t pool;

	if (t->save_ctx != NULL)
		return t->save_ctx;
	pool = pool_alloconly_create("rbd save", 4096);
	ctx = p_new(pool, struct rbd_save_context, 1);
	ctx->ctx.transaction = t;
	ctx->mbox = RBD_MAILBOX(t->box);
	ctx->trans = t->itrans;
	ctx->pool = pool;
	p_array_init(&ctx->items, pool, 8);
	t->save_ctx = &ctx->ctx;
	return t->save_ctx;
}

static int rbd_save_set_too_large(struct rbd_save_context *ctx)
{
	mail_storage_set_error(
	        ctx->mbox->box.storage, MAIL_ERROR_LIMIT,
	        t_strdup_printf("Message is larger than the maximum of "
	                        "%" PRIuUOFF_T " bytes",
	                        ctx->mbox->storage->max_message_size));
	return -1;
}

/* Moves the body from memory to a body writer, which takes it from then
   on. */
static int rbd_save_start_writer(struct rbd_save_context *ctx)
{
	struct rbd_user *user;

	if (rbd_mailbox_get_user(ctx->mbox, &user) < 0)
		return -1;
	guid_128_generate(ctx->guid);
	if (rbd_body_writer_open(user, ctx->guid, &ctx->writer,
	                         &ctx->write_error) != RBD_OK ||
	    rbd_body_writer_write(ctx->writer, ctx->body->data, ctx->body->used,
	                          &ctx->write_error) != RBD_OK)
		return -1;
	buffer_free(&ctx->body);
	return 0;
}

static int rbd_save_take(struct rbd_save_context *ctx, const void *data,
                         size_t size)
{
	if (ctx->size + size > ctx->mbox->storage->max_message_size) {
		ctx->too_large = TRUE;
		return -1;
	}
	ctx->size += size;
	if (ctx->writer != NULL) {
		return rbd_body_writer_write(ctx->writer, data, size,
		                             &ctx->write_error) == RBD_OK
		               ? 0
		               : -1;
	}
	buffer_append(ctx->body, data, size);
	if (ctx->memory_used + ctx->body->used <= RBD_SAVE_MEMORY_MAX)
		return 0;
	return rbd_save_start_writer(ctx);
}

/* Takes what index_storage_save_continue() copies from the input. A
   failure is remembered for rbd_save_continue() to report (an ostream
   error would only say "write failed"); the rest of the input is
   discarded meanwhile. */
static ssize_t o_stream_rbd_body_sendv(struct ostream_private *stream,
                                       const struct const_iovec *iov,
                                       unsigned int iov_count)
{
	struct rbd_body_ostream *bstream =
	        container_of(stream, struct rbd_body_ostream, ostream);
	struct rbd_save_context *ctx = bstream->ctx;
	ssize_t ret = 0;
	unsigned int i;

	for (i = 0; i < iov_count; i++) {
		if (!ctx->failed &&
		    rbd_save_take(ctx, iov[i].iov_base, iov[i].iov_len) < 0)
			ctx->failed = TRUE;
		ret += iov[i].iov_len;
	}
	stream->ostream.offset += ret;
	return ret;
}

static struct ostream *o_stream_create_rbd_body(struct rbd_save_context *ctx)
{
	struct rbd_body_ostream *bstream;
	struct ostream *output;

	bstream = i_new(struct rbd_body_ostream, 1);
	bstream->ostream.max_buffer_size = SIZE_MAX;
	bstream->ostream.sendv = o_stream_rbd_body_sendv;
	bstream->ctx = ctx;
	output = o_stream_create(&bstream->ostream, NULL, -1);
	o_stream_set_name(output, "(rbd body)");
	return output;
}

int rbd_save_begin(struct mail_save_context *_ctx, struct istream *input)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);
	uoff_t size;

	ctx->finished = FALSE;
	ctx->failed = FALSE;
	ctx->too_large = FALSE;
	ctx->size = 0;
	i_zero(&ctx->write_error);
	/* A size known up front (an IMAP literal) is refused before its data
	   is read: imap answers NO instead of asking for the literal. */
	if (i_stream_get_size(input, TRUE, &size) > 0 &&
	    size > ctx->mbox->storage->max_message_size)
		return rbd_save_set_too_large(ctx);
	ctx->body = buffer_create_dynamic(default_pool, 4096);
	ctx->input = i_stream_create_crlf(input);
	_ctx->data.output = o_stream_create_rbd_body(ctx);
	return 0;
}

/* Reports why the body could not be taken. */
static int rbd_save_fail(struct rbd_save_context *ctx)
{
	if (ctx->too_large)
		return rbd_save_set_too_large(ctx);
	if (ctx->write_error.code != RBD_OK)
		rbd_storage_set_error(ctx->mbox->box.storage,
		                      &ctx->write_error);
	return -1;
}

int rbd_save_continue(struct mail_save_context *_ctx)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);

	if (!ctx->failed &&
	    index_storage_save_continue(_ctx, ctx->input, NULL) < 0)
		ctx->failed = TRUE;
	return ctx->failed ? rbd_save_fail(ctx) : 0;
}

static const char **rbd_save_keywords(struct rbd_save_context *ctx,
                                      struct mail_keywords *keywords)
{
	const ARRAY_TYPE(keywords) *names =
	        mail_index_get_keywords(ctx->mbox->box.index);
	const char **out;
	unsigned int i, count = keywords == NULL ? 0 : keywords->count;

	out = p_new(ctx->pool, const char *, count + 1);
	for (i = 0; i < count; i++)
		out[i] = p_strdup(ctx->pool,
		                  array_idx_elem(names, keywords->idx[i]));
	return out;
}

static void rbd_save_fill_common(struct rbd_save_context *ctx,
                                 struct rbd_save_item *item)
{
	struct mail_save_data *mdata = &ctx->ctx.data;

	item->flags = mdata->flags & MAIL_FLAGS_NONRECENT;
	item->keywords = rbd_save_keywords(ctx, mdata->keywords);
	item->save_date =
	        mdata->save_date != (time_t)-1 ? mdata->save_date : ioloop_time;
	item->uid = mdata->uid;
	/* A given GUID is kept as given (a Maildir one is a file name) and
	   is what FETCH reports. The body is named by a fresh one all the
	   same: dsync saves each copy of a message on its own, with the same
	   GUID, and a body object must never be shared by accident. */
	guid_128_generate(item->guid);
	item->guid_text = p_strdup(ctx->pool, mdata->guid);
}

/* A temporary index record lets the saved or copied mail be looked at
   before commit (LMTP reads its headers, quota its size). It is dropped at
   commit, so nothing may be cached for it. */
static void rbd_save_add_temp_record(struct rbd_save_context *ctx,
                                     struct rbd_save_item *item)
{
	struct index_mail *imail;

	mail_index_append(ctx->trans, 0, &item->seq);
	/* Its flags and keywords too: mail_log and push_notification report
	   them for a save or copy. */
	mail_index_update_flags(ctx->trans, item->seq, MODIFY_REPLACE,
	                        item->flags);
	if (ctx->ctx.data.keywords != NULL) {
		mail_index_update_keywords(ctx->trans, item->seq,
		                           MODIFY_REPLACE,
		                           ctx->ctx.data.keywords);
	}
	if (ctx->ctx.dest_mail == NULL)
		return;
	mail_set_seq_saving(ctx->ctx.dest_mail, item->seq);
	imail = INDEX_MAIL(ctx->ctx.dest_mail);
	imail->data.no_caching = TRUE;
	imail->data.forced_no_caching = TRUE;
	ctx->temp_count++;
}

/* Publishes a streamed body (its head object): the item then names it by
   `guid`, with the reference the append is to own. */
static int rbd_save_finish_writer(struct rbd_save_context *ctx,
                                  struct rbd_save_item *item)
{
	struct rbd_body_info info;
	struct rbd_error err;
	int ret = 0;

	i_zero(&info);
	memcpy(info.first_mailbox_guid, ctx->mbox->guid,
	       sizeof(info.first_mailbox_guid));
	info.received_date = item->received_date;
	info.save_date = item->save_date;
	if (rbd_body_writer_finish(ctx->writer, &info, &err) != RBD_OK) {
		rbd_storage_set_error(ctx->mbox->box.storage, &err);
		ret = -1;
	}
	rbd_body_writer_free(&ctx->writer);
	memcpy(item->guid, ctx->guid, sizeof(item->guid));
	return ret;
}

static void rbd_save_discard_body(struct rbd_save_context *ctx)
{
	buffer_free(&ctx->body);
	if (ctx->writer != NULL)
		rbd_body_writer_free(&ctx->writer);
}

int rbd_save_finish(struct mail_save_context *_ctx)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);
	struct mail_save_data *mdata = &_ctx->data;
	struct rbd_save_item *item;
	uoff_t size;

	ctx->finished = TRUE;
	/* Plugins' encoders (zlib, mail_crypt) write their last bytes when
	   finished. The message's size is what was read, not what they
	   stored: sizes are those of the message as saved, as dbox records
	   them. */
	if (ctx->failed) {
		if (mdata->output != NULL)
			o_stream_abort(mdata->output);
	} else if (o_stream_finish(mdata->output) < 0) {
		mail_storage_set_critical(ctx->mbox->box.storage,
		                          "write(%s) failed: %s",
		                          o_stream_get_name(mdata->output),
		                          o_stream_get_error(mdata->output));
		ctx->failed = TRUE;
	}
	size = ctx->input == NULL ? 0 : ctx->input->v_offset;
	o_stream_unref(&mdata->output);
	i_stream_unref(&ctx->input);
	if (ctx->failed) {
		rbd_save_discard_body(ctx);
		index_save_context_free(_ctx);
		return -1;
	}

	item = array_append_space(&ctx->items);
	rbd_save_fill_common(ctx, item);
	item->received_date = mdata->received_date != (time_t)-1
	                              ? mdata->received_date
	                              : ioloop_time;
	item->pop3_uidl = p_strdup(ctx->pool, mdata->pop3_uidl);
	/* The stream went through a CRLF filter: the virtual size (CRLF
	   line endings) is the physical size. */
	item->virtual_size = size;
	item->physical_size = size;
	if (ctx->writer != NULL) {
		if (rbd_save_finish_writer(ctx, item) < 0) {
			array_pop_back(&ctx->items);
			index_save_context_free(_ctx);
			return -1;
		}
	} else {
		item->body = ctx->body;
		ctx->body = NULL;
		ctx->memory_used += item->body->used;
	}
	rbd_save_add_temp_record(ctx, item);
	index_save_context_free(_ctx);
	return 0;
}

void rbd_save_cancel(struct mail_save_context *_ctx)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);

	ctx->failed = TRUE;
	(void)rbd_save_finish(_ctx);
}

static const struct rbd_save_item *rbd_save_find(struct mail_save_context *_ctx,
                                                 uint32_t seq)
{
	const struct rbd_save_item *item;

	if (_ctx == NULL)
		return NULL;
	array_foreach(&RBD_SAVECTX(_ctx)->items, item)
	{
		if (item->seq == seq)
			return item;
	}
	return NULL;
}

struct istream *rbd_save_get_stream(struct mail_save_context *ctx, uint32_t seq)
{
	const struct rbd_save_item *item = rbd_save_find(ctx, seq);
	struct rbd_mailbox *mbox;
	struct rbd_record record;
	struct istream *input;
	struct rbd_error err;

	if (item == NULL)
		return NULL;
	if (item->body != NULL)
		return i_stream_create_from_data(item->body->data,
		                                 item->body->used);
	if (item->copy_src != NULL) {
		/* A copy shares its source's body (mail_log reads its
		   Message-ID before the commit). */
		if (item->copy_src_shown == NULL)
			return NULL;
		mbox = item->copy_src;
		record = *item->copy_src_shown;
	} else {
		/* Streamed: its body object is already published. */
		mbox = RBD_SAVECTX(ctx)->mbox;
		i_zero(&record);
		memcpy(record.guid, item->guid, sizeof(record.guid));
	}
	if (rbd_mailbox_open_index(mbox) < 0)
		return NULL;
	if (rbd_body_istream_open(mbox, &record, &input, &err) < 0) {
		rbd_storage_set_error(mbox->box.storage, &err);
		return NULL;
	}
	return input;
}

bool rbd_save_get_sizes(struct mail_save_context *ctx, uint32_t seq,
                        uoff_t *physical_size_r, uoff_t *virtual_size_r)
{
	const struct rbd_save_item *item = rbd_save_find(ctx, seq);

	if (item == NULL)
		return FALSE;
	*physical_size_r = item->physical_size;
	*virtual_size_r = item->virtual_size;
	return TRUE;
}

void rbd_save_add_copy(struct mail_save_context *_ctx, struct mail *src)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);
	struct rbd_save_item *item;
	uoff_t size;

	item = array_append_space(&ctx->items);
	rbd_save_fill_common(ctx, item);
	item->copy_src = RBD_MAILBOX(src->box);
	item->copy_src_uid = src->uid;
	item->copy_src_shown = rbd_mail_get_shown(src, ctx->pool);
	if (mail_get_physical_size(src, &size) == 0)
		item->physical_size = size;
	if (mail_get_virtual_size(src, &size) == 0)
		item->virtual_size = size;
	rbd_save_add_temp_record(ctx, item);
	ctx->finished = TRUE;
	index_save_context_free(_ctx);
}

/* The client hears NO for a save or copy whose outcome is unknown, yet its
   messages may still appear: name them. The core keeps their bodies'
   references (gc reclaims them after rbd_gc_grace if nothing appears) and
   expunges the messages again at the next call on this mailbox if they
   did appear (rbd_events_settled() logs which it was). */
static void rbd_commit_log_unknown(struct rbd_save_context *ctx,
                                   const struct rbd_save_item *items,
                                   unsigned int count)
{
	string_t *what = t_str_new(128);
	unsigned int i;

	for (i = 0; i < count; i++) {
		if (i > 0)
			str_append_c(what, ' ');
		if (items[i].copy_src == NULL)
			str_append(what, guid_128_to_string(items[i].guid));
		else
			str_printfa(what, "%s:%u",
			            mailbox_get_vname(&items[i].copy_src->box),
			            items[i].copy_src_uid);
	}
	e_error(ctx->mbox->box.event,
	        "rbd: answered NO, but these %u messages may still appear in "
	        "this mailbox (GUIDs, or copied mailbox:UID): %s; if they do, "
	        "the next command on it expunges them",
	        count, str_c(what));
}

/* A read-write session appending to the mailbox it has selected (imap
   reuses the selected mailbox for an APPEND to it) claims \Recent in the
   append's own op, which its next sync would otherwise do in one op more:
   that sync brings every message the claim covers into its view. */
static rbd_code rbd_commit_append(struct rbd_mailbox *mbox,
                                  const struct rbd_new_message *msgs,
                                  unsigned int count, uint32_t *uids,
                                  struct rbd_error *err)
{
	uint32_t first, end;
	rbd_code code;

	if ((mbox->box.flags & MAILBOX_FLAG_DROP_RECENT) == 0)
		return rbd_index_append(mbox->index, msgs, count, uids, err);
	code = rbd_index_append_claiming(mbox->index, msgs, count, uids,
	                                 &first, &end, err);
	if (first < end) {
		if (!array_is_created(&mbox->saves_claimed))
			p_array_init(&mbox->saves_claimed, mbox->box.pool, 4);
		seq_range_array_add_range(&mbox->saves_claimed, first, end - 1);
	}
	return code;
}

static int rbd_commit_saves(struct rbd_save_context *ctx,
                            struct rbd_save_item *items, unsigned int count,
                            uint32_t *uids)
{
	struct rbd_new_message *msgs = t_new(struct rbd_new_message, count);
	struct rbd_error err;
	unsigned int i;

	for (i = 0; i < count; i++) {
		const struct rbd_save_item *item = &items[i];

		memcpy(msgs[i].guid, item->guid, sizeof(msgs[i].guid));
		if (item->body != NULL) {
			msgs[i].body = item->body->data;
			msgs[i].body_size = item->body->used;
		} else {
			msgs[i].stored = 1;
			msgs[i].referenced = 1;
		}
		msgs[i].flags = item->flags;
		msgs[i].keywords = item->keywords;
		msgs[i].keyword_count = str_array_length(item->keywords);
		msgs[i].received_date = item->received_date;
		msgs[i].save_date = item->save_date;
		msgs[i].physical_size = item->physical_size;
		msgs[i].virtual_size = item->virtual_size;
		msgs[i].pop3_uidl = item->pop3_uidl;
		msgs[i].guid_text = item->guid_text;
		msgs[i].uid = item->uid;
	}
	for (i = 0; i < count; i++)
		items[i].appended = TRUE;
	if (rbd_commit_append(ctx->mbox, msgs, count, uids, &err) != RBD_OK) {
		if (err.code == RBD_ERR_UNKNOWN)
			rbd_commit_log_unknown(ctx, items, count);
		rbd_mailbox_set_error(ctx->mbox, &err);
		return -1;
	}
	return 0;
}

static int rbd_commit_copies(struct rbd_save_context *ctx,
                             struct rbd_mailbox *src,
                             const struct rbd_save_item *items,
                             unsigned int count, uint32_t *uids)
{
	struct rbd_copy_override *overrides =
	        t_new(struct rbd_copy_override, count);
	uint32_t *src_uids = t_new(uint32_t, count);
	struct rbd_error err;
	unsigned int i;

	for (i = 0; i < count; i++) {
		src_uids[i] = items[i].copy_src_uid;
		overrides[i].flags = items[i].flags;
		overrides[i].keywords = items[i].keywords;
		overrides[i].keyword_count =
		        str_array_length(items[i].keywords);
		overrides[i].uid = items[i].uid;
		overrides[i].shown = items[i].copy_src_shown;
	}
	if (rbd_mailbox_open_index(src) < 0) {
		mail_storage_copy_error(ctx->mbox->box.storage,
		                        src->box.storage);
		return -1;
	}
	if (rbd_index_copy(src->index, src_uids, count, ctx->mbox->index,
	                   overrides, uids, &err) != RBD_OK) {
		if (err.code == RBD_ERR_UNKNOWN)
			rbd_commit_log_unknown(ctx, items, count);
		rbd_storage_set_error(ctx->mbox->box.storage, &err);
		return -1;
	}
	for (i = 0; i < count; i++) {
		if (uids[i] == 0) {
			mail_storage_set_error(
			        ctx->mbox->box.storage, MAIL_ERROR_EXPUNGED,
			        "Some of the messages no longer exist");
			return -1;
		}
	}
	return 0;
}

int rbd_transaction_save_commit_pre(struct mail_save_context *_ctx)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);
	struct mail_transaction_commit_changes *changes =
	        _ctx->transaction->changes;
	struct rbd_save_item *items;
	struct rbd_index_status status;
	unsigned int i, j, count, last_seq;
	uint32_t *uids;
	int ret = 0;

	i_assert(ctx->finished || ctx->failed);
	items = array_get_modifiable(&ctx->items, &count);
	if (count == 0)
		return 0;
	if (rbd_mailbox_open_index(ctx->mbox) < 0)
		return -1;
	ctx->mbox->sync_pending = TRUE;
	uids = t_new(uint32_t, count);
	/* Consecutive runs of saves, or of copies from one source, each
	   become one guarded op; UIDs keep the order of the calls, which is
	   the order COPYUID and APPENDUID report. */
	for (i = 0; i < count && ret == 0; i = j) {
		for (j = i + 1;
		     j < count && items[j].copy_src == items[i].copy_src; j++)
			;
		T_BEGIN
		{
			if (items[i].copy_src == NULL)
				ret = rbd_commit_saves(ctx, items + i, j - i,
				                       uids + i);
			else
				ret = rbd_commit_copies(ctx, items[i].copy_src,
				                        items + i, j - i,
				                        uids + i);
		}
		T_END;
	}
	if (ret < 0)
		return -1;

	/* The temporary records go; the real ones come with the next sync. */
	for (i = 0; i < count; i++) {
		if (items[i].keywords != NULL && items[i].keywords[0] != NULL)
			ctx->mbox->sync_at_close = TRUE;
	}
	last_seq = mail_index_view_get_messages_count(_ctx->transaction->view);
	for (i = 0; i < ctx->temp_count; i++)
		mail_index_expunge(ctx->trans, last_seq - i);
	rbd_index_last_status(ctx->mbox->index, &status);
	changes->uid_validity = status.uidvalidity;
	for (i = 0; i < count; i++)
		seq_range_array_add(&changes->saved_uids, uids[i]);
	return 0;
}

static void rbd_save_free(struct rbd_save_context *ctx)
{
	struct rbd_save_item *item;

	array_foreach_modifiable(&ctx->items, item)
	{
		if (item->body != NULL)
			buffer_free(&item->body);
	}
	rbd_save_discard_body(ctx);
	ctx->ctx.transaction->save_ctx = NULL;
	pool_unref(&ctx->pool);
}

void rbd_transaction_save_commit_post(
        struct mail_save_context *_ctx,
        struct mail_index_transaction_commit_result *result ATTR_UNUSED)
{
	rbd_save_free(RBD_SAVECTX(_ctx));
}

/* Streamed bodies that no append was asked to publish are released, so
   that `doveadm rbd check` does not count them as a crash's leftovers; gc
   reclaims them. One the append was given stays as the append left it. */
static void rbd_save_release_streamed(struct rbd_save_context *ctx)
{
	struct rbd_save_item *item;
	struct rbd_user *user;
	struct rbd_error err;

	array_foreach_modifiable(&ctx->items, item)
	{
		if (item->copy_src != NULL || item->body != NULL ||
		    item->appended)
			continue;
		if (rbd_mailbox_get_user(ctx->mbox, &user) < 0 ||
		    rbd_body_unref(user, item->guid, &err) != RBD_OK)
			return;
	}
}

void rbd_transaction_save_rollback(struct mail_save_context *_ctx)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);

	rbd_save_release_streamed(ctx);
	rbd_save_free(ctx);
}
