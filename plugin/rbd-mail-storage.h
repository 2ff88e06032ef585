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
/* The largest message a save accepts when neither rbd_max_message_size nor
   quota_max_mail_size says (bodies are streamed: this is a policy, not a
   memory limit). */
#define RBD_DEFAULT_MAX_MESSAGE_SIZE (2ULL * 1024 * 1024 * 1024)
/* The dictionary keys of a mailbox's ACL start with this, its GUID and "/"
   (rbd-acl.c). */
#define RBD_ACL_KEY_PREFIX "rbd.acl/"
#define RBD_UNAVAILABLE_MSG                                                    \
	"Mail storage temporarily unavailable, try again later"

struct rbd_storage {
	struct mail_storage storage;

	struct rbd_config *config;
	/* One storage serves every rbd namespace of the session's user, its
	   shared namespaces (other owners' mailboxes) included: the RADOS
	   namespace of each is its mailbox list's (rbd_list_get_user). */
	struct rbd_cluster *cluster;
	/* Until then, operations fail at once: once the cluster has not
	   answered within rbd_op_timeout, the remaining steps of the same
	   command (body reads, the closing sync) must not each wait the
	   timeout out again. Short, so a recovered cluster is used at once. */
	struct timeval unavailable_until;
	/* Saves of larger messages fail with MAIL_ERROR_LIMIT. */
	uoff_t max_message_size;
	/* rbd-events.c: when the cluster stopped answering (0: it answers). */
	time_t outage_since;
};

/* What the RADOS ops of one namespace handle cost (rbd-events.c). */
struct rbd_op_totals {
	uint64_t ops, errors, bytes, usecs;
};

/* What the index record extension "rbd-msg" keeps of each message: what
   FETCH needs without asking RADOS (sizes, dates, GUID, where the body
   is). The sync writes it when it appends the message to this node's
   index; rbd-mail.c reads it through the mail's view. So every session has
   it for every message its view shows, whichever process synced the
   message in, and still after another node expunged it. */
enum rbd_msg_ext_flags {
	RBD_MSG_EXT_INLINE_BODY = 0x01,
	/* The record has a guid_text or a POP3 UIDL: rbd_mailbox_msg(). */
	RBD_MSG_EXT_GUID_TEXT = 0x02,
	RBD_MSG_EXT_POP3_UIDL = 0x04,
};
struct rbd_msg_ext {
	guid_128_t guid; /* never empty once written */
	uint64_t physical_size, virtual_size;
	int64_t received_date, save_date;
	uint32_t flags; /* enum rbd_msg_ext_flags */
	uint32_t unused;
};

/* A record as RADOS had it when this process last listed the records, for
   the strings the extension does not keep (guid_text, POP3 UIDL). Filled
   by sync. */
struct rbd_msg {
	uint32_t uid;
	struct rbd_msg_ext ext;
	const char *pop3_uidl;
	/* The GUID the message was saved with (dsync), or NULL: ext.guid. */
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
	/* When the name was last found to lead to `guid` (a command stamp:
	   once per command is enough, see rbd_mailbox_check_name). */
	struct timeval name_checked;
	/* RADOS state the local index was last synced to. */
	struct rbd_index_status synced;
	uint32_t rbd_ext_id;
	/* Per message: the 128-bit GUID dsync compares (rbd-sync.c). */
	uint32_t guid_ext_id;
	/* Per message: struct rbd_msg_ext. */
	uint32_t msg_ext_id;

	/* Records by UID (sorted), in msg_pool: those with strings, or all
	   of them once msgs_all is set (rbd_mailbox_keep_all_msgs). Never
	   loses a UID a view may still show; a miss lists the records again
	   once per sync (msgs_stale). */
	pool_t msg_pool;
	ARRAY_TYPE(rbd_msg) msgs;
	bool msgs_stale;
	bool msgs_all;
	/* This process saved messages with keywords that the cache learns
	   only from a sync: one at close when no other came (rbd_sync). */
	bool sync_at_close;
	/* This process changed the mailbox in RADOS since its last sync:
	   the cache learns that only from a sync, so the next one reads the
	   cluster even when FAST (rbd_mailbox_sync_init). */
	bool sync_pending;
	/* The open in progress is for what the index state answers (a
	   STATUS, a size: rbd_mailbox_read_state): it opens the RADOS index
	   only. */
	bool open_for_status;
	/* When the index handle last read the state: its open, or
	   rbd_mailbox_read_state (a command stamp). */
	struct timeval state_read;

	/* Bodies read ahead for a FETCH of many messages (rbd-mail.c): uid,
	   guid and inline_body of each. */
	ARRAY(struct rbd_record) prefetch_records;
	ARRAY(struct rbd_prefetched_body) prefetched;

	/* UIDs this session's APPENDs claimed as \Recent in their own op
	   (rbd_index_append_claiming), for the next sync to mark. */
	ARRAY_TYPE(seq_range) saves_claimed;

	struct rbd_watch *watch;
	struct io *watch_io;
	struct timeout *poll_to;
	/* The index changed while nobody listened (rbd-notify.c). */
	struct timeout *pending_to;
	/* The command that last removed the notify callback (rbd-notify.c). */
	struct timeval notify_stopped;
	bool notify_pending;
};

/* A flag change of one transaction, queued by rbd-mail.c; at commit all of
   a transaction's go to RADOS in one guarded op (rbd-sync.c). */
struct rbd_pending_change {
	ARRAY_TYPE(seq_range) uids;
	uint8_t add_flags, remove_flags;
	ARRAY_TYPE(const_string) add_keywords, remove_keywords;
};

struct rbd_transaction_context {
	union mailbox_transaction_module_context module_ctx;
	pool_t pool;
	ARRAY(struct rbd_pending_change) changes;
	ARRAY_TYPE(seq_range) expunges;
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
/* rbd_service's default: the socket of the node's rbd service in
   base_dir. */
void rbd_config_set_default_service(struct rbd_config *config,
                                    const char *base_dir);
/* The RADOS namespace of the user's objects: rbd_namespace, else the
   username. */
const char *rbd_user_namespace(struct mail_user *user);
/* Opens *user, the RADOS namespace `ns`, unless it is open already
   (connecting if needed: a login must not fail just because the cluster is
   slow to answer); sets the storage error on failure. */
int rbd_storage_open_user(struct rbd_storage *storage, const char *ns,
                          struct rbd_user **user);
/* The RADOS namespace handle of the mailbox's list (its owner's); sets the
   storage error on failure. */
int rbd_mailbox_get_user(struct rbd_mailbox *mbox, struct rbd_user **user_r);
/* Maps a core failure to a mail storage error: anything the cluster did is
   a temporary failure (NO [UNAVAILABLE]), never "does not exist". */
void rbd_storage_set_error(struct mail_storage *storage,
                           const struct rbd_error *err);
int rbd_mailbox_open_index(struct rbd_mailbox *mbox);
/* Sets the error of a failed operation on the mailbox's index: one that is
   gone was deleted under this session (MAIL_ERROR_NOTFOUND, and Dovecot
   ends a session that has it selected). */
void rbd_mailbox_set_error(struct rbd_mailbox *mbox,
                           const struct rbd_error *err);
/* Fails, with the mailbox marked deleted, if its name no longer leads to
   the index this session has open (deleted, or renamed, on another node).
   At most one lookup per command. */
int rbd_mailbox_check_name(struct rbd_mailbox *mbox);
/* TRUE (with the storage error set) if the cluster failed to answer
   within the last moments (see unavailable_until). */
bool rbd_storage_unavailable(struct rbd_storage *storage);

/* rbd-events.c */
/* Sends the ops the core recorded for `user` since the last call as
   rbd_request_finished events (children of `parent`) and adds them to
   *totals; if `storage` is given and its cluster was unavailable, an
   answered op logs the end of that. */
void rbd_events_flush(struct event *parent, struct rbd_user *user,
                      struct rbd_op_totals *totals,
                      struct rbd_storage *storage);
void rbd_events_unavailable(struct rbd_storage *storage, const char *reason);
/* rbd_session_finished: the totals of one namespace handle, at its end. */
void rbd_events_session_finished(struct event *parent,
                                 const struct rbd_op_totals *totals);

/* rbd-list.c */
extern struct event_category event_category_rbd;

/* The RADOS namespace of the list's mailboxes: that of the namespace's
   owner (rbd_namespace, else the username), which in a shared namespace is
   not the session's user. */
const char *rbd_list_namespace(struct mailbox_list *list);
/* The handle of rbd_list_namespace(), opened on first use; sets the list
   error on failure. */
int rbd_list_get_user(struct mailbox_list *list, struct rbd_user **user_r);
/* Logs what the user's calls did so far (rbd-events.c). */
void rbd_list_flush_events(struct mailbox_list *list);
/* The dictionary object of rbd_list_namespace(), opened on first use; sets
   the list error on failure. */
int rbd_list_get_dict(struct mailbox_list *list,
                      struct rbd_dict_store **dict_r);
/* The cache root of the namespace's user: <root>/<user dir>. Without a
   root (INDEX=MEMORY) there is none, and Dovecot keeps indexes in
   memory. */
const char *rbd_list_cache_root(struct mailbox_list *list);
/* This node's index cache directory of the mailbox with that GUID in the
   list's namespace, or NULL if indexes are kept in memory. */
const char *rbd_list_cache_path(struct mailbox_list *list,
                                const guid_128_t mailbox_guid);
/* A mailbox open found `name` leading to `guid`: the list's path lookups
   of that name in the same command use it instead of reading RADOS. */
void rbd_list_looked_up(struct mailbox_list *list, const char *name,
                        const guid_128_t guid);
/* The GUID `name` had in the listing of a mailbox list iteration still
   running (LIST RETURN STATUS, doveadm mailbox status: each listed
   mailbox is opened while it runs): TRUE and *guid_r if the name was
   listed, FALSE if no iteration runs or it did not list the name (the
   caller reads RADOS). */
bool rbd_list_listed_guid(struct mailbox_list *list, const char *name,
                          guid_128_t guid_r);

/* rbd-list-notify.c: mailbox list notification (imap NOTIFY). */
int rbd_list_notify_init(struct mailbox_list *list,
                         enum mailbox_list_notify_event mask,
                         struct mailbox_list_notify **notify_r);
int rbd_list_notify_next(struct mailbox_list_notify *notify,
                         const struct mailbox_list_notify_rec **rec_r);
void rbd_list_notify_deinit(struct mailbox_list_notify *notify);
void rbd_list_notify_wait(struct mailbox_list_notify *notify,
                          void (*callback)(void *context), void *context);
void rbd_list_notify_flush(struct mailbox_list_notify *notify);

/* rbd-sync.c */
/* How this node's index cache of a mailbox relates to the cluster's state
   of it. */
enum rbd_cache_state {
	/* Nothing cached yet: the first sync fills it. */
	RBD_CACHE_EMPTY,
	/* The same mailbox (GUID, UIDVALIDITY), at or behind the cluster's
	   HIGHESTMODSEQ: a sync brings it up to date. */
	RBD_CACHE_CURRENT,
	/* Anything else (the mailbox that had the name before, another
	   UIDVALIDITY, MODSEQs the cluster never reached, marked deleted):
	   never synced, rebuilt. */
	RBD_CACHE_STALE,
};
enum rbd_cache_state
rbd_sync_cache_state(struct rbd_mailbox *mbox, struct mail_index_view *view,
                     const struct rbd_index_status *status);
/* Registers the index header extension recording which RADOS state
   (mailbox GUID, UIDVALIDITY, HIGHESTMODSEQ) this node's index reflects,
   and the record extensions with each message's GUID and rbd_msg_ext. */
void rbd_sync_register_ext(struct rbd_mailbox *mbox);
struct mailbox_sync_context *
rbd_mailbox_sync_init(struct mailbox *box, enum mailbox_sync_flags flags);
int rbd_sync(struct rbd_mailbox *mbox, bool force_full);
/* Pushes the transaction's flag changes and expunges to RADOS. When the
   op of a hidden transaction (STORE .SILENT) was replayed into it,
   *own_sync_r holds the index lock until the transaction is committed:
   mail_index_sync_commit() after, mail_index_sync_rollback() instead. */
int rbd_transaction_push(struct mailbox_transaction_context *t,
                         struct mail_index_sync_ctx **own_sync_r);
/* From now on mbox->msgs keeps every record, not only those with strings:
   for a cache older than the rbd-msg extension. */
void rbd_mailbox_keep_all_msgs(struct rbd_mailbox *mbox);
/* The record of `uid` as last listed: 1 with *msg_r, 0 when RADOS no
   longer has it (expunged before this process listed it), -1 on a cluster
   error (storage error set). A record without strings is there only after
   rbd_mailbox_keep_all_msgs(). */
int rbd_mailbox_msg(struct rbd_mailbox *mbox, uint32_t uid,
                    const struct rbd_msg **msg_r);

/* rbd-mail.c */
struct mail *rbd_mail_alloc(struct mailbox_transaction_context *t,
                            enum mail_fetch_field wanted_fields,
                            struct mailbox_header_lookup_ctx *wanted_headers);
void rbd_mailbox_prefetch_free(struct rbd_mailbox *mbox);
/* What the session shows of a stored message (in `pool`), for a COPY that
   may find its record already expunged (rbd_copy_override.shown); NULL
   when the mail has nothing to show. */
const struct rbd_record *rbd_mail_get_shown(struct mail *mail, pool_t pool);

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
/* A stream of the body of a message saved in this transaction, by its
   temporary sequence, so that the saved mail can be read before commit
   (LMTP); NULL when there is none (or with the storage error set). */
struct istream *rbd_save_get_stream(struct mail_save_context *ctx,
                                    uint32_t seq);
/* The sizes of a message saved or copied in this transaction. */
bool rbd_save_get_sizes(struct mail_save_context *ctx, uint32_t seq,
                        uoff_t *physical_size_r, uoff_t *virtual_size_r);

/* Queues a copy of `src`, with the flags set on ctx, for commit_pre. */
void rbd_save_add_copy(struct mail_save_context *ctx, struct mail *src);

/* rbd-copy.c */
int rbd_copy(struct mail_save_context *ctx, struct mail *mail);

/* rbd-istream.c */
/* A seekable stream of the record's body that reads from RADOS only the
   ranges read from it (rbd_body_reader); its size is known at once. */
int rbd_body_istream_open(struct rbd_mailbox *mbox,
                          const struct rbd_record *record,
                          struct istream **input_r, struct rbd_error *err_r);

/* rbd-notify.c */
void rbd_notify_changes(struct mailbox *box);
void rbd_notify_deinit(struct rbd_mailbox *mbox);

/* rbd-clock.c */
/* The command clock for the core (rbd_user_open, rbd_dict_store_open): in
   the services that serve a client command by command, the time the
   current command (or its continuation, or an IDLE wakeup) began, so that
   each gets ONE deadline, rbd_op_timeout after that, however many RADOS ops
   it needs. NULL in doveadm and the indexer, whose long jobs keep
   rbd_op_timeout per op. */
const struct timeval *rbd_command_clock(void);
/* What is read once per command (a name lookup, the ACL snapshot) is
   stamped with the time the command began: the command clock, or
   ioloop_timeval where none runs (once per ioloop callback). Not
   ioloop_timeval everywhere: imap refreshes it at the end of
   command_exec(), before the command's own sync. */
void rbd_command_stamp(struct timeval *stamp_r);
bool rbd_command_stamped(const struct timeval *stamp);
void rbd_clock_register(struct module *module);
void rbd_clock_unregister(void);

/* rbd-unsettled.c */
/* At the end of a session, after rbd_user_settle(): keeps what is still
   unsettled in the user's cache dir (or logs it as unchecked). */
void rbd_unsettled_keep(struct mailbox_list *list, struct rbd_user *user);
/* At a user's first open in a process: claims what earlier processes kept,
   adds it to the user and settles it. */
void rbd_unsettled_adopt(struct mailbox_list *list, struct rbd_user *user);

/* rbd-users.c */
/* The dictionary object (rbd_list_get_dict) of the rbd INBOX namespace of
   the mail user of this process with that name; for modules given a
   username only (the Sieve storage). */
int rbd_users_get_dict(const char *username, struct rbd_dict_store **dict_r,
                       const char **error_r);
void rbd_users_register(struct module *module);
void rbd_users_unregister(void);

/* rbd-dict.c */
/* Registers the dict driver "rbd" and the hook that lets a dict opened for
   a mail user find that user's plugin settings. */
void rbd_dict_register(struct module *module);
void rbd_dict_unregister(void);

#endif
