/* Per-message lookups. Sizes, dates, GUID and where the body is come from
   the local index (struct rbd_msg_ext, no RADOS read for FETCH FLAGS
   RFC822.SIZE); the rare strings (a dsync GUID text, POP3 UIDL) from the
   records. Bodies are read from RADOS, many at once when Dovecot
   prefetches. Flag changes and expunges are queued on the transaction
   (rbd-sync.c pushes them). */

#include "lib.h"
#include "array.h"
#include "istream.h"
#include "index-mail.h"
#include "rbd-mail-storage.h"

struct mail *rbd_mail_alloc(struct mailbox_transaction_context *t,
                            enum mail_fetch_field wanted_fields,
                            struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct index_mail *mail;
	pool_t pool;

	pool = pool_alloconly_create("mail", 2048);
	mail = p_new(pool, struct index_mail, 1);
	index_mail_init(mail, t, wanted_fields, wanted_headers, pool, NULL);
	return &mail->mail.mail;
}

/* What the mail's view keeps of the message (struct rbd_msg_ext). It is
   there for every message the view shows, also one another node has
   expunged since: a miss means the cache is older than the extension, and
   the record is asked for instead. Returns -1 with the mail marked expunged
   when neither has it, or with a storage error when the cluster failed. */
static int rbd_mail_msg(struct mail *mail, struct rbd_msg_ext *ext_r)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(mail->box);
	const struct rbd_msg *msg;
	const void *data;
	bool expunged;
	int ret;

	mail_index_lookup_ext(mail->transaction->view, mail->seq,
	                      mbox->msg_ext_id, &data, &expunged);
	if (data != NULL && !guid_128_is_empty(data)) {
		memcpy(ext_r, data, sizeof(*ext_r));
		return 0;
	}
	if (!mail_metadata_access_start(mail))
		return -1;
	rbd_mailbox_keep_all_msgs(mbox);
	if ((ret = rbd_mailbox_msg(mbox, mail->uid, &msg)) <= 0) {
		if (ret == 0)
			mail_set_expunged(mail);
		return -1;
	}
	*ext_r = msg->ext;
	return 0;
}

/* The record's strings (guid_text, POP3 UIDL), which the extension only
   flags: the record as this process last listed it. */
static int rbd_mail_msg_strings(struct mail *mail, const struct rbd_msg **msg_r)
{
	int ret;

	if (!mail_metadata_access_start(mail))
		return -1;
	ret = rbd_mailbox_msg(RBD_MAILBOX(mail->box), mail->uid, msg_r);
	if (ret == 0)
		mail_set_expunged(mail);
	return ret > 0 ? 0 : -1;
}

/* Sizes of a stored message come from its record; a message being saved
   or copied in this transaction answers from the save context. */
static int rbd_mail_get_sizes(struct mail *mail, uoff_t *physical_size_r,
                              uoff_t *virtual_size_r)
{
	struct rbd_msg_ext ext;

	if (mail->saving) {
		return rbd_save_get_sizes(mail->transaction->save_ctx,
		                          mail->seq, physical_size_r,
		                          virtual_size_r)
		               ? 0
		               : -1;
	}
	if (rbd_mail_msg(mail, &ext) < 0)
		return -1;
	*physical_size_r = ext.physical_size;
	*virtual_size_r = ext.virtual_size;
	return 0;
}

static int rbd_mail_get_physical_size(struct mail *mail, uoff_t *size_r)
{
	uoff_t vsize;

	if (rbd_mail_get_sizes(mail, size_r, &vsize) == 0)
		return 0;
	return mail->saving ? index_mail_get_physical_size(mail, size_r) : -1;
}

static int rbd_mail_get_virtual_size(struct mail *mail, uoff_t *size_r)
{
	uoff_t psize;

	if (rbd_mail_get_sizes(mail, &psize, size_r) == 0)
		return 0;
	return mail->saving ? index_mail_get_virtual_size(mail, size_r) : -1;
}

static int rbd_mail_get_received_date(struct mail *mail, time_t *date_r)
{
	struct rbd_msg_ext ext;

	if (mail->saving)
		return index_mail_get_received_date(mail, date_r);
	if (rbd_mail_msg(mail, &ext) < 0)
		return -1;
	*date_r = ext.received_date;
	return 0;
}

static int rbd_mail_get_save_date(struct mail *mail, time_t *date_r)
{
	struct rbd_msg_ext ext;

	if (mail->saving)
		return index_mail_get_save_date(mail, date_r);
	if (rbd_mail_msg(mail, &ext) < 0)
		return -1;
	*date_r = ext.save_date;
	return 1;
}

/* Values returned live as long as the mail (dsync keeps a GUID across data
   stack frames); msgs may be reloaded meanwhile. */
static int rbd_mail_get_special(struct mail *mail, enum mail_fetch_field field,
                                const char **value_r)
{
	struct index_mail *imail = INDEX_MAIL(mail);
	pool_t pool = imail->mail.data_pool;
	const struct rbd_msg *msg;
	struct rbd_msg_ext ext;

	if (mail->saving ||
	    (field != MAIL_FETCH_GUID && field != MAIL_FETCH_UIDL_BACKEND))
		return index_mail_get_special(mail, field, value_r);
	if (rbd_mail_msg(mail, &ext) < 0)
		return -1;
	if (field == MAIL_FETCH_GUID) {
		if ((ext.flags & RBD_MSG_EXT_GUID_TEXT) == 0) {
			*value_r = p_strdup(pool, guid_128_to_string(ext.guid));
			return 0;
		}
		if (rbd_mail_msg_strings(mail, &msg) < 0)
			return -1;
		*value_r =
		        p_strdup(pool, msg->guid_text != NULL
		                               ? msg->guid_text
		                               : guid_128_to_string(ext.guid));
		return 0;
	}
	if ((ext.flags & RBD_MSG_EXT_POP3_UIDL) == 0) {
		*value_r = "";
		return 0;
	}
	if (rbd_mail_msg_strings(mail, &msg) < 0)
		return -1;
	*value_r = p_strdup_empty(pool, msg->pop3_uidl);
	return 0;
}

/* The message as a record (without flags, keywords and strings), from what
   the view keeps of it: where its body is, its sizes and dates. Returns -1
   as rbd_mail_msg() does, else 1 when the record has a guid_text, 0 when
   not. */
static int rbd_mail_record(struct mail *mail, struct rbd_record *rec_r)
{
	struct rbd_msg_ext ext;

	if (rbd_mail_msg(mail, &ext) < 0)
		return -1;
	i_zero(rec_r);
	rec_r->uid = mail->uid;
	memcpy(rec_r->guid, ext.guid, sizeof(rec_r->guid));
	rec_r->inline_body = (ext.flags & RBD_MSG_EXT_INLINE_BODY) != 0;
	rec_r->physical_size = ext.physical_size;
	rec_r->virtual_size = ext.virtual_size;
	rec_r->received_date = ext.received_date;
	rec_r->save_date = ext.save_date;
	return (ext.flags & RBD_MSG_EXT_GUID_TEXT) != 0 ? 1 : 0;
}

const struct rbd_record *rbd_mail_get_shown(struct mail *mail, pool_t pool)
{
	struct rbd_record rec;
	const struct rbd_msg *msg;
	int ret;

	if ((ret = rbd_mail_record(mail, &rec)) < 0)
		return NULL;
	/* Best effort: without it the copy's GUID is the hash's hex. */
	if (ret > 0 &&
	    rbd_mailbox_msg(RBD_MAILBOX(mail->box), mail->uid, &msg) > 0)
		rec.guid_text = p_strdup(pool, msg->guid_text);
	return p_memdup(pool, &rec, sizeof(rec));
}

void rbd_mailbox_prefetch_free(struct rbd_mailbox *mbox)
{
	struct rbd_prefetched_body *p;

	if (!array_is_created(&mbox->prefetched))
		return;
	array_foreach_modifiable(&mbox->prefetched, p)
	        rbd_buffer_free(&p->body);
	array_clear(&mbox->prefetched);
	array_clear(&mbox->prefetch_records);
}

/* Bodies up to this size are read ahead whole for a FETCH of many
   messages; larger ones are read by range as the stream is read, so a
   partial FETCH reads only what it returns and memory stays bounded. */
#define RBD_PREFETCH_MAX_SIZE (1024 * 1024)

static bool rbd_mail_prefetch(struct mail *mail)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(mail->box);
	struct index_mail *imail = INDEX_MAIL(mail);
	struct rbd_record rec;

	/* Only bodies are worth reading ahead; Dovecot asks for up to
	   mail_prefetch_count mails before it needs the first one. */
	if ((imail->data.access_part & (READ_HDR | READ_BODY)) == 0 ||
	    imail->data.stream != NULL || mail->saving)
		return TRUE;
	/* A mail without a body to point at fails when it is read. */
	if (rbd_mail_record(mail, &rec) < 0 ||
	    rec.physical_size > RBD_PREFETCH_MAX_SIZE)
		return TRUE;
	if (!array_is_created(&mbox->prefetch_records)) {
		p_array_init(&mbox->prefetch_records, mbox->box.pool, 32);
		p_array_init(&mbox->prefetched, mbox->box.pool, 32);
	}
	array_push_back(&mbox->prefetch_records, &rec);
	return FALSE;
}

/* Reads every body asked for by prefetch, all in flight at once. */
static void rbd_mailbox_read_prefetched(struct rbd_mailbox *mbox)
{
	const struct rbd_record *records;
	struct rbd_buffer **bodies;
	struct rbd_error err;
	unsigned int i, count;

	if (rbd_storage_unavailable(mbox->storage)) {
		array_clear(&mbox->prefetch_records);
		return;
	}
	records = array_get(&mbox->prefetch_records, &count);
	bodies = t_new(struct rbd_buffer *, count);
	/* A failed body stays NULL and is read again, alone, on demand --
	   unless the cluster is away, which then fails at once. */
	if (rbd_index_read_bodies(mbox->index, records, count, bodies, &err) ==
	    RBD_ERR_UNAVAILABLE)
		rbd_storage_set_error(mbox->box.storage, &err);
	for (i = 0; i < count; i++) {
		struct rbd_prefetched_body *p;

		if (bodies[i] == NULL)
			continue;
		p = array_append_space(&mbox->prefetched);
		p->uid = records[i].uid;
		p->body = bodies[i];
	}
	array_clear(&mbox->prefetch_records);
}

static struct rbd_buffer *rbd_mailbox_take_prefetched(struct rbd_mailbox *mbox,
                                                      uint32_t uid)
{
	struct rbd_prefetched_body *p;
	struct rbd_buffer *body;
	const struct rbd_record *rec;
	bool pending = FALSE;

	if (!array_is_created(&mbox->prefetched))
		return NULL;
	array_foreach(&mbox->prefetch_records, rec)
	{
		if (rec->uid == uid)
			pending = TRUE;
	}
	if (pending)
		rbd_mailbox_read_prefetched(mbox);
	array_foreach_modifiable(&mbox->prefetched, p)
	{
		if (p->uid == uid) {
			body = p->body;
			array_delete(&mbox->prefetched,
			             array_foreach_idx(&mbox->prefetched, p),
			             1);
			return body;
		}
	}
	return NULL;
}

static void rbd_mail_body_free(struct rbd_buffer *body)
{
	rbd_buffer_free(&body);
}

/* A body gc has reclaimed (the message was expunged long enough ago) is an
   expunged mail, which Dovecot answers without ending the session; a
   cluster that fails to answer is a temporary error, never "expunged". */
static int rbd_mail_read_body(struct mail *mail, struct istream **input_r)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(mail->box);
	struct rbd_record record;
	struct rbd_buffer *body;
	struct rbd_error err;

	if (rbd_mail_record(mail, &record) < 0)
		return -1;
	body = rbd_mailbox_take_prefetched(mbox, mail->uid);
	if (body != NULL) {
		/* The stream reads the buffer itself and frees it at its
		   end: no copy of every body a FETCH returns. */
		*input_r = i_stream_create_from_data(body->data, body->size);
		i_stream_add_destroy_callback(*input_r, rbd_mail_body_free,
		                              body);
		return 0;
	}
	if (rbd_storage_unavailable(mbox->storage))
		return -1;
	if (rbd_body_istream_open(mbox, &record, input_r, &err) < 0) {
		if (err.code == RBD_ERR_NOT_FOUND)
			mail_set_expunged(mail);
		else
			rbd_storage_set_error(mail->box->storage, &err);
		return -1;
	}
	return 0;
}

/* The body as stored: what zlib and mail_crypt wrote when it was saved. */
static int rbd_mail_open_stored(struct mail *mail, struct istream **input_r)
{
	if (!mail->saving)
		return rbd_mail_read_body(mail, input_r);
	*input_r = rbd_save_get_stream(mail->transaction->save_ctx, mail->seq);
	if (*input_r == NULL) {
		mail_set_expunged(mail);
		return -1;
	}
	return 0;
}

/* Plugins that change what is stored (zlib, mail_crypt) decode it in
   istream_opened, as for dbox: the mail's stream, its sizes and what
   SEARCH reads are the message as it was saved. */
static int rbd_mail_get_stream(struct mail *mail, bool get_body ATTR_UNUSED,
                               struct message_size *hdr_size,
                               struct message_size *body_size,
                               struct istream **stream_r)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	struct index_mail *imail = INDEX_MAIL(mail);
	struct istream *input;

	if (imail->data.stream == NULL) {
		if (!mail_stream_access_start(mail) ||
		    rbd_mail_open_stored(mail, &input) < 0)
			return -1;
		i_stream_set_name(input,
		                  t_strdup_printf("rbd uid=%u", mail->uid));
		if (pmail->v.istream_opened(mail, &input) < 0) {
			i_stream_unref(&input);
			return -1;
		}
		imail->data.stream = input;
	}
	return index_mail_init_stream(imail, hdr_size, body_size, stream_r);
}

/* Finds or adds the queued change with exactly these sets. */
static struct rbd_pending_change *
rbd_change_get(struct rbd_transaction_context *rt, uint8_t add, uint8_t remove,
               const char *const *add_kw, const char *const *remove_kw)
{
	struct rbd_pending_change *change;
	unsigned int i;

	array_foreach_modifiable(&rt->changes, change)
	{
		if (change->add_flags != add ||
		    change->remove_flags != remove ||
		    array_count(&change->add_keywords) !=
		            str_array_length(add_kw) ||
		    array_count(&change->remove_keywords) !=
		            str_array_length(remove_kw))
			continue;
		for (i = 0; add_kw[i] != NULL; i++) {
			if (strcmp(array_idx_elem(&change->add_keywords, i),
			           add_kw[i]) != 0)
				break;
		}
		if (add_kw[i] != NULL)
			continue;
		for (i = 0; remove_kw[i] != NULL; i++) {
			if (strcmp(array_idx_elem(&change->remove_keywords, i),
			           remove_kw[i]) != 0)
				break;
		}
		if (remove_kw[i] == NULL)
			return change;
	}
	change = array_append_space(&rt->changes);
	change->add_flags = add;
	change->remove_flags = remove;
	p_array_init(&change->uids, rt->pool, 16);
	p_array_init(&change->add_keywords, rt->pool, 4);
	p_array_init(&change->remove_keywords, rt->pool, 4);
	for (i = 0; add_kw[i] != NULL; i++) {
		const char *kw = p_strdup(rt->pool, add_kw[i]);
		array_push_back(&change->add_keywords, &kw);
	}
	for (i = 0; remove_kw[i] != NULL; i++) {
		const char *kw = p_strdup(rt->pool, remove_kw[i]);
		array_push_back(&change->remove_keywords, &kw);
	}
	return change;
}

/* A transaction's flag and keyword changes wait in it for its commit
   (rbd_transaction_push: RADOS first, the index by sync), so the index
   view does not show them. A mail's flags and keywords include them, as
   the transaction's view does for Dovecot's own storages: the notify
   plugin (mail_log, push_notification) compares them before and after an
   update to tell what changed. Changes apply in queued order, as the push
   applies them. */
static enum mail_flags rbd_mail_get_flags(struct mail *mail)
{
	struct rbd_transaction_context *rt = RBD_TRANSACTION(mail->transaction);
	enum mail_flags flags = index_mail_get_flags(mail);
	const struct rbd_pending_change *change;

	array_foreach(&rt->changes, change)
	{
		if (seq_range_exists(&change->uids, mail->uid)) {
			flags = (flags | change->add_flags) &
			        ENUM_NEGATE(change->remove_flags);
		}
	}
	return flags;
}

static bool rbd_keyword_in(const ARRAY_TYPE(const_string) * names,
                           const char *name)
{
	const char *item;

	array_foreach_elem(names, item)
	{
		if (strcasecmp(item, name) == 0)
			return TRUE;
	}
	return FALSE;
}

static bool rbd_change_keywords_of(const struct rbd_pending_change *change,
                                   uint32_t uid)
{
	return (!array_is_empty(&change->add_keywords) ||
	        !array_is_empty(&change->remove_keywords)) &&
	       seq_range_exists(&change->uids, uid);
}

/* The keywords with the transaction's queued changes (see
   rbd_mail_get_flags), in the mail's data pool like Dovecot's own. */
static const char *const *rbd_mail_get_keywords(struct mail *mail)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	struct rbd_transaction_context *rt = RBD_TRANSACTION(mail->transaction);
	const char *const *base = index_mail_get_keywords(mail);
	const struct rbd_pending_change *changes;
	ARRAY_TYPE(const_string) result, next;
	unsigned int i, count;
	const char *name;

	changes = array_get(&rt->changes, &count);
	for (i = 0; i < count; i++) {
		if (rbd_change_keywords_of(&changes[i], mail->uid))
			break;
	}
	if (i == count)
		return base;
	p_array_init(&result, pmail->data_pool, 8);
	for (; *base != NULL; base++)
		array_push_back(&result, base);
	for (; i < count; i++) {
		if (!rbd_change_keywords_of(&changes[i], mail->uid))
			continue;
		p_array_init(&next, pmail->data_pool, array_count(&result) + 4);
		array_foreach_elem(&result, name)
		{
			if (!rbd_keyword_in(&changes[i].remove_keywords, name))
				array_push_back(&next, &name);
		}
		array_foreach_elem(&changes[i].add_keywords, name)
		{
			if (!rbd_keyword_in(&changes[i].remove_keywords,
			                    name) &&
			    !rbd_keyword_in(&next, name))
				array_push_back(&next, &name);
		}
		result = next;
	}
	array_append_zero(&result);
	return array_front(&result);
}

static void rbd_mail_update_flags(struct mail *mail,
                                  enum modify_type modify_type,
                                  enum mail_flags flags)
{
	struct rbd_transaction_context *rt = RBD_TRANSACTION(mail->transaction);
	static const char *const none[] = {NULL};
	struct rbd_pending_change *change;
	uint8_t add = 0, remove = 0;

	if (mail->saving) {
		index_mail_update_flags(mail, modify_type, flags);
		return;
	}
	flags &= MAIL_FLAGS_NONRECENT;
	switch (modify_type) {
	case MODIFY_ADD:
		add = flags;
		break;
	case MODIFY_REMOVE:
		remove = flags;
		break;
	case MODIFY_REPLACE:
		add = flags;
		remove = MAIL_FLAGS_NONRECENT & ENUM_NEGATE(flags);
		break;
	}
	if (add == 0 && remove == 0)
		return;
	change = rbd_change_get(rt, add, remove, none, none);
	seq_range_array_add(&change->uids, mail->uid);
}

static void rbd_mail_update_keywords(struct mail *mail,
                                     enum modify_type modify_type,
                                     struct mail_keywords *keywords)
{
	struct rbd_transaction_context *rt = RBD_TRANSACTION(mail->transaction);
	const ARRAY_TYPE(keywords) *names =
	        mail_index_get_keywords(mail->box->index);
	ARRAY_TYPE(const_string) given, others;
	const char *const *current, *name;
	struct rbd_pending_change *change;
	static const char *const none[] = {NULL};
	unsigned int i;

	if (mail->saving) {
		index_mail_update_keywords(mail, modify_type, keywords);
		return;
	}
	t_array_init(&given, keywords->count + 1);
	for (i = 0; i < keywords->count; i++) {
		name = array_idx_elem(names, keywords->idx[i]);
		array_push_back(&given, &name);
	}
	array_append_zero(&given);
	switch (modify_type) {
	case MODIFY_ADD:
		change = rbd_change_get(rt, 0, 0, array_front(&given), none);
		break;
	case MODIFY_REMOVE:
		change = rbd_change_get(rt, 0, 0, none, array_front(&given));
		break;
	case MODIFY_REPLACE:
	default:
		/* Replace = add these, remove whatever else it has now. */
		t_array_init(&others, 8);
		for (current = mail_get_keywords(mail); *current != NULL;
		     current++) {
			if (!str_array_find(array_front(&given), *current))
				array_push_back(&others, current);
		}
		array_append_zero(&others);
		change = rbd_change_get(rt, 0, 0, array_front(&given),
		                        array_front(&others));
		break;
	}
	seq_range_array_add(&change->uids, mail->uid);
}

static void rbd_mail_expunge(struct mail *mail)
{
	struct rbd_transaction_context *rt = RBD_TRANSACTION(mail->transaction);

	if (mail->saving) {
		index_mail_expunge(mail);
		return;
	}
	seq_range_array_add(&rt->expunges, mail->uid);
}

struct mail_vfuncs rbd_mail_vfuncs = {
        .close = index_mail_close,
        .free = index_mail_free,
        .set_seq = index_mail_set_seq,
        .set_uid = index_mail_set_uid,
        .set_uid_cache_updates = index_mail_set_uid_cache_updates,
        .prefetch = rbd_mail_prefetch,
        .precache = index_mail_precache,
        .add_temp_wanted_fields = index_mail_add_temp_wanted_fields,

        .get_flags = rbd_mail_get_flags,
        .get_keywords = rbd_mail_get_keywords,
        .get_keyword_indexes = index_mail_get_keyword_indexes,
        .get_modseq = index_mail_get_modseq,
        .get_pvt_modseq = index_mail_get_pvt_modseq,
        .get_parts = index_mail_get_parts,
        .get_date = index_mail_get_date,
        .get_received_date = rbd_mail_get_received_date,
        .get_save_date = rbd_mail_get_save_date,
        .get_virtual_size = rbd_mail_get_virtual_size,
        .get_physical_size = rbd_mail_get_physical_size,
        .get_first_header = index_mail_get_first_header,
        .get_headers = index_mail_get_headers,
        .get_header_stream = index_mail_get_header_stream,
        .get_stream = rbd_mail_get_stream,
        .get_binary_stream = index_mail_get_binary_stream,
        .get_special = rbd_mail_get_special,
        .get_backend_mail = index_mail_get_backend_mail,
        .update_flags = rbd_mail_update_flags,
        .update_keywords = rbd_mail_update_keywords,
        .update_modseq = index_mail_update_modseq,
        .update_pvt_modseq = index_mail_update_pvt_modseq,
        .expunge = rbd_mail_expunge,
        .set_cache_corrupted = index_mail_set_cache_corrupted,
        .istream_opened = index_mail_opened,
};
