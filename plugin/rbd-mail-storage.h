#ifndef RBD_MAIL_STORAGE_H
#define RBD_MAIL_STORAGE_H

/* The Dovecot side of dovecot-rbd: a storage class and a mailbox list class
   named "rbd". Every mailbox, message and index fact lives in RADOS and is
   reached only through the core's C ABI (rbd-storage.h of storage-rbd/).
   Dovecot's own index is a per-node cache that only rbd-sync.c writes. */

#include "index-storage.h"
#include "mailbox-list-private.h"
#include "rbd-storage.h" /* the core's C ABI */

#define RBD_STORAGE_NAME "rbd"
#define RBD_LIST_NAME "rbd"
#define RBD_HIERARCHY_SEP '/'
#define RBD_UNAVAILABLE_MSG                                                    \
	"Mail storage temporarily unavailable, try again later"

struct rbd_storage {
	struct mail_storage storage;

	struct rbd_config *config;
	struct rbd_cluster *cluster;
	/* The user's namespace, opened on first use (connecting if needed):
	   a login must not fail just because the cluster is slow to answer. */
	struct rbd_user *user;
	const char *ns;
	/* Until then, operations fail at once: once the cluster has not
	   answered within rbd_op_timeout, the remaining steps of the same
	   command (body reads, the closing sync) must not each wait the
	   timeout out again. Short, so a recovered cluster is used at once. */
	struct timeval unavailable_until;
};

/* What the index records say about one message, for lookups that must not
   read its body (sizes, dates, GUID, POP3 UIDL). Filled by sync. */
struct rbd_msg {
	uint32_t uid;
	bool inline_body;
	guid_128_t guid;
	uint64_t physical_size, virtual_size;
	time_t received_date, save_date;
	const char *pop3_uidl;
	/* The GUID the message was saved with (dsync), or NULL: guid. */
	const char *guid_text;
};
ARRAY_DEFINE_TYPE(rbd_msg, struct rbd_msg);

struct rbd_prefetched_body {
	uint32_t uid;
	struct rbd_buffer *body;
};

struct rbd_mailbox {
	struct mailbox box;
	struct rbd_storage *storage;

	guid_128_t guid;
	struct rbd_index *index;
	/* RADOS state the local index was last synced to. */
	struct rbd_index_status synced;
	uint32_t rbd_ext_id;
	/* Per message: the 128-bit GUID dsync compares (rbd-sync.c). */
	uint32_t guid_ext_id;

	/* Records by UID (sorted), in msg_pool. Complete after the first
	   sync of this process; incremental syncs keep it current. */
	pool_t msg_pool;
	ARRAY_TYPE(rbd_msg) msgs;
	bool msgs_complete;

	/* Bodies read ahead for a FETCH of many messages (rbd-mail.c). */
	ARRAY_TYPE(uint32_t) prefetch_uids;
	ARRAY(struct rbd_prefetched_body) prefetched;

	struct rbd_watch *watch;
	struct io *watch_io;
	struct timeout *poll_to;
};

/* A flag change of one transaction, queued by rbd-mail.c and pushed to
   RADOS as one guarded op per distinct change at commit (rbd-sync.c). */
struct rbd_flag_change {
	ARRAY_TYPE(seq_range) uids;
	uint8_t add_flags, remove_flags;
	ARRAY_TYPE(const_string) add_keywords, remove_keywords;
};

struct rbd_transaction_context {
	union mailbox_transaction_module_context module_ctx;
	pool_t pool;
	ARRAY(struct rbd_flag_change) changes;
	ARRAY_TYPE(seq_range) expunges;
	/* An op of this transaction was written into its index transaction
	   (rbd_push_apply_own). */
	bool own_replayed;
};

extern struct mail_storage rbd_storage;
extern struct mailbox_list rbd_mailbox_list;
extern struct mail_vfuncs rbd_mail_vfuncs;
extern MODULE_CONTEXT_DEFINE(rbd_transaction_module,
                             &mail_storage_module_register);

/* Dovecot's container_of() has no outer parentheses. */
#define RBD_STORAGE(s) (container_of(s, struct rbd_storage, storage))
#define RBD_MAILBOX(s) (container_of(s, struct rbd_mailbox, box))
#define RBD_TRANSACTION(t) MODULE_CONTEXT(t, rbd_transaction_module)

/* rbd-storage.c */
/* A new config from the user's plugin { rbd_* } settings; the error names
   the setting that is wrong. */
int rbd_user_config(struct mail_user *user, struct rbd_config **config_r,
                    const char **error_r);
/* The RADOS namespace of the user's objects: rbd_namespace, else the
   username. */
const char *rbd_user_namespace(struct mail_user *user);
/* Fails (naming the setting) when the process's address space limit is too
   low for librados. */
int rbd_check_vsz_limit(const char **error_r);
int rbd_storage_get_user(struct rbd_storage *storage, struct rbd_user **user_r);
/* Maps a core failure to a mail storage error: anything the cluster did is
   a temporary failure (NO [UNAVAILABLE]), never "does not exist". */
void rbd_storage_set_error(struct mail_storage *storage,
                           const struct rbd_error *err);
int rbd_mailbox_open_index(struct rbd_mailbox *mbox);
/* TRUE (with the storage error set) if the cluster failed to answer
   within the last moments (see unavailable_until). */
bool rbd_storage_unavailable(struct rbd_storage *storage);

/* rbd-sync.c */
/* Registers the index header extension recording which RADOS state
   (mailbox GUID, UIDVALIDITY, HIGHESTMODSEQ) this node's index reflects,
   and the record extension with each message's GUID. */
void rbd_sync_register_ext(struct rbd_mailbox *mbox);
struct mailbox_sync_context *
rbd_mailbox_sync_init(struct mailbox *box, enum mailbox_sync_flags flags);
int rbd_sync(struct rbd_mailbox *mbox, bool force_full);
int rbd_transaction_push(struct mailbox_transaction_context *t);
const struct rbd_msg *rbd_mailbox_msg(struct rbd_mailbox *mbox, uint32_t uid);

/* rbd-mail.c */
struct mail *rbd_mail_alloc(struct mailbox_transaction_context *t,
                            enum mail_fetch_field wanted_fields,
                            struct mailbox_header_lookup_ctx *wanted_headers);
void rbd_mailbox_prefetch_free(struct rbd_mailbox *mbox);

/* rbd-save.c */
struct mail_save_context *rbd_save_alloc(struct mailbox_transaction_context *t);
int rbd_save_begin(struct mail_save_context *ctx, struct istream *input);
int rbd_save_continue(struct mail_save_context *ctx);
int rbd_save_finish(struct mail_save_context *ctx);
void rbd_save_cancel(struct mail_save_context *ctx);
int rbd_transaction_save_commit_pre(struct mail_save_context *ctx);
void rbd_transaction_save_commit_post(
        struct mail_save_context *ctx,
        struct mail_index_transaction_commit_result *result);
void rbd_transaction_save_rollback(struct mail_save_context *ctx);
/* The body of a message saved in this transaction, by its temporary
   sequence, so that the saved mail can be read before commit (LMTP). */
bool rbd_save_get_body(struct mail_save_context *ctx, uint32_t seq,
                       const void **data_r, size_t *size_r);
/* The sizes of a message saved or copied in this transaction. */
bool rbd_save_get_sizes(struct mail_save_context *ctx, uint32_t seq,
                        uoff_t *physical_size_r, uoff_t *virtual_size_r);

/* Queues a copy of `src`, with the flags set on ctx, for commit_pre. */
void rbd_save_add_copy(struct mail_save_context *ctx, struct mail *src);

/* rbd-copy.c */
int rbd_copy(struct mail_save_context *ctx, struct mail *mail);

/* rbd-notify.c */
void rbd_notify_changes(struct mailbox *box);
void rbd_notify_deinit(struct rbd_mailbox *mbox);

/* rbd-dict.c */
/* Registers the dict driver "rbd" and the hook that lets a dict opened for
   a mail user find that user's plugin settings. */
void rbd_dict_register(struct module *module);
void rbd_dict_unregister(void);

#endif
