/* Saving (APPEND, MULTIAPPEND, LMTP delivery, dsync) and the commit of
   saves and copies.

   Each saved message is kept in memory until commit_pre, where all the
   transaction's saves become ONE guarded op on the index (small bodies
   inline, larger ones written first, in parallel), and all copies from a
   source mailbox another one. Meanwhile a temporary index record lets the
   saved mail be read (LMTP logs its Message-ID); it is dropped at commit,
   and the real records arrive with their RADOS MODSEQs on the next sync,
   as imapc does with its remote server. */

#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "str.h"
#include "istream.h"
#include "istream-crlf.h"
#include "ostream.h"
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
	buffer_t *body;
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

	/* the message being saved */
	struct istream *input;
	buffer_t *body;
	bool failed : 1;
	bool finished : 1;
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

int rbd_save_begin(struct mail_save_context *_ctx, struct istream *input)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);

	ctx->finished = FALSE;
	ctx->failed = FALSE;
	ctx->body = buffer_create_dynamic(default_pool, 4096);
	ctx->input = i_stream_create_crlf(input);
	_ctx->data.output = o_stream_create_buffer(ctx->body);
	o_stream_cork(_ctx->data.output);
	return 0;
}

int rbd_save_continue(struct mail_save_context *_ctx)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);

	if (ctx->failed)
		return -1;
	if (index_storage_save_continue(_ctx, ctx->input, NULL) < 0) {
		ctx->failed = TRUE;
		return -1;
	}
	return 0;
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

int rbd_save_finish(struct mail_save_context *_ctx)
{
	struct rbd_save_context *ctx = RBD_SAVECTX(_ctx);
	struct mail_save_data *mdata = &_ctx->data;
	struct rbd_save_item *item;

	ctx->finished = TRUE;
	if (!ctx->failed && o_stream_finish(mdata->output) < 0) {
		mail_set_critical(_ctx->dest_mail, "rbd: save buffer: %s",
		                  o_stream_get_error(mdata->output));
		ctx->failed = TRUE;
	}
	o_stream_unref(&mdata->output);
	i_stream_unref(&ctx->input);
	if (ctx->failed) {
		buffer_free(&ctx->body);
		index_save_context_free(_ctx);
		return -1;
	}

	item = array_append_space(&ctx->items);
	rbd_save_fill_common(ctx, item);
	item->body = ctx->body;
	ctx->body = NULL;
	item->received_date = mdata->received_date != (time_t)-1
	                              ? mdata->received_date
	                              : ioloop_time;
	item->pop3_uidl = p_strdup(ctx->pool, mdata->pop3_uidl);
	/* The stream went through a CRLF filter: the virtual size (CRLF
	   line endings) is the stored size. */
	item->virtual_size = item->body->used;

	item->physical_size = item->body->used;
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

bool rbd_save_get_body(struct mail_save_context *ctx, uint32_t seq,
                       const void **data_r, size_t *size_r)
{
	const struct rbd_save_item *item = rbd_save_find(ctx, seq);

	if (item == NULL || item->body == NULL)
		return FALSE;
	*data_r = item->body->data;
	*size_r = item->body->used;
	return TRUE;
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
   messages may still appear: name them (the core keeps their bodies'
   references; gc reclaims them after rbd_gc_grace if nothing appears). */
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
	        "this mailbox (GUIDs, or copied mailbox:UID): %s",
	        count, str_c(what));
}

static int rbd_commit_saves(struct rbd_save_context *ctx,
                            const struct rbd_save_item *items,
                            unsigned int count, uint32_t *uids)
{
	struct rbd_new_message *msgs = t_new(struct rbd_new_message, count);
	struct rbd_error err;
	unsigned int i;

	for (i = 0; i < count; i++) {
		const struct rbd_save_item *item = &items[i];

		memcpy(msgs[i].guid, item->guid, sizeof(msgs[i].guid));
		msgs[i].body = item->body->data;
		msgs[i].body_size = item->body->used;
		msgs[i].flags = item->flags;
		msgs[i].keywords = item->keywords;
		msgs[i].keyword_count = str_array_length(item->keywords);
		msgs[i].received_date = item->received_date;
		msgs[i].save_date = item->save_date;
		msgs[i].physical_size = item->body->used;
		msgs[i].virtual_size = item->virtual_size;
		msgs[i].pop3_uidl = item->pop3_uidl;
		msgs[i].guid_text = item->guid_text;
		msgs[i].uid = item->uid;
	}
	if (rbd_index_append(ctx->mbox->index, msgs, count, uids, &err) !=
	    RBD_OK) {
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
	const struct rbd_save_item *items;
	struct rbd_index_status status;
	unsigned int i, j, count, last_seq;
	uint32_t *uids;
	int ret = 0;

	i_assert(ctx->finished || ctx->failed);
	items = array_get(&ctx->items, &count);
	if (count == 0)
		return 0;
	if (rbd_mailbox_open_index(ctx->mbox) < 0 ||
	    rbd_mailbox_check_name(ctx->mbox) < 0)
		return -1;
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
	if (ctx->body != NULL)
		buffer_free(&ctx->body);
	ctx->ctx.transaction->save_ctx = NULL;
	pool_unref(&ctx->pool);
}

void rbd_transaction_save_commit_post(
        struct mail_save_context *_ctx,
        struct mail_index_transaction_commit_result *result ATTR_UNUSED)
{
	rbd_save_free(RBD_SAVECTX(_ctx));
}

void rbd_transaction_save_rollback(struct mail_save_context *_ctx)
{
	rbd_save_free(RBD_SAVECTX(_ctx));
}
