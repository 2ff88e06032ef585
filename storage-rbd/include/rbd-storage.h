/*
 * rbd-storage.h - the C ABI of the dovecot-rbd storage core.
 *
 * The core keeps one user's mailboxes, messages and indexes in RADOS (see
 * doc/design.md). This header is the only way the Dovecot plugin reaches
 * it, so it is plain C: opaque handles, no librados or C++ types, no
 * exceptions, no callbacks from librados threads.
 *
 * Conventions, for every function below unless it says otherwise:
 *  - The return value is an rbd_code; RBD_OK (0) is success. When `err` is
 *    not NULL it receives the code and a one-line message on failure.
 *  - Calls block the calling thread until RADOS answers or the deadline
 *    passes (then RBD_ERR_UNAVAILABLE, or RBD_ERR_UNKNOWN for a write whose
 *    outcome is unknown): rbd_op_timeout after the start of the current
 *    command when the user has a command clock (rbd_user_open),
 *    rbd_op_timeout per RADOS op otherwise. Nothing is called back.
 *  - Handles are not thread-safe: use one handle from one thread at a time.
 *    The cluster handle may be shared by every user a process serves.
 *  - Memory returned through an out pointer is owned by the caller and is
 *    freed with the matching rbd_*_free(). Input pointers are only read
 *    during the call.
 */
#ifndef RBD_STORAGE_H
#define RBD_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RBD_ABI_VERSION 1

typedef enum rbd_code {
	RBD_OK = 0,
	/* The object (mailbox, message, record) does not exist. */
	RBD_ERR_NOT_FOUND,
	/* Create of something that already exists. */
	RBD_ERR_EXISTS,
	/* Cluster unreachable, op timed out, or too full: try again later. */
	RBD_ERR_UNAVAILABLE,
	/* Lost the optimistic race too many times in a row. */
	RBD_ERR_CONFLICT,
	/* Stored bytes failed to decode or to match their checksum. */
	RBD_ERR_CORRUPT,
	/* Invalid argument or setting; the message names it. */
	RBD_ERR_INVALID,
	/* cephx refused the key or its caps; the message names the keyring. */
	RBD_ERR_PERMISSION,
	/* The change log no longer reaches back that far: do a full resync. */
	RBD_ERR_RESYNC,
	/* A lease is held by somebody else. */
	RBD_ERR_BUSY,
	/* Any other I/O error. */
	RBD_ERR_IO,
	/*
	 * A write timed out or lost its connection and reading back could not
	 * tell whether it was applied: it may still take effect later. The
	 * caller reports a temporary failure and says so in its log; the core
	 * has kept every body reference the write would need.
	 */
	RBD_ERR_UNKNOWN,
} rbd_code;

struct rbd_error {
	rbd_code code;
	char message[512];
};

/* Returns a static name such as "unavailable" for a code. */
const char *rbd_code_name(rbd_code code);

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

struct rbd_config;

/* Creates a configuration with every default applied. Never fails. */
struct rbd_config *rbd_config_new(void);
void rbd_config_free(struct rbd_config **config);

/*
 * Sets one setting by its dovecot.conf name: rbd_ceph_conf, rbd_ceph_user,
 * rbd_pool, rbd_index_pool, rbd_namespace, rbd_op_timeout (a duration:
 * "30s", "500ms", "2m"), rbd_inline_max (a size: "4k"), rbd_stripe_size,
 * rbd_gc_grace, rbd_max_message_size, rbd_changelog_max_entries (a count),
 * rbd_changelog_max_age (a duration: "30d"). Returns RBD_ERR_INVALID with a
 * message naming the setting for an unknown name or an unparsable value.
 */
rbd_code rbd_config_set(struct rbd_config *config, const char *name,
                        const char *value, struct rbd_error *err);

/* Checks that the required settings are present (rbd_pool). */
rbd_code rbd_config_validate(const struct rbd_config *config,
                             struct rbd_error *err);

/* rbd_gc_grace in seconds, for rbd_user_gc() and rbd_user_check(). */
uint32_t rbd_config_gc_grace(const struct rbd_config *config);

/* rbd_max_message_size in bytes, or 0 when it is not set. */
uint64_t rbd_config_max_message_size(const struct rbd_config *config);

/* ------------------------------------------------------------------ */
/* Cluster and user                                                    */

struct rbd_buffer;
struct rbd_cluster;
struct rbd_user;

/*
 * Returns the process-wide connection for this configuration (same
 * conf file, cephx user and timeouts): a second call with an equal config
 * returns the same connection, so every user a process serves shares one
 * librados instance. Does not contact the cluster: the connection is made
 * lazily by the first operation that needs it, and then kept until
 * rbd_shutdown(), so the next user the process serves does not reconnect.
 * Release the handle with rbd_cluster_unref().
 */
rbd_code rbd_cluster_get(const struct rbd_config *config,
                         struct rbd_cluster **cluster_r, struct rbd_error *err);
void rbd_cluster_unref(struct rbd_cluster **cluster);

/*
 * Shuts down the process's connections, each once its last handle is
 * released. Call it once before the process exits (plugin deinit, a tool's
 * main): librados threads still running while exit() tears down the
 * library's globals crash the process.
 */
void rbd_shutdown(void);

/*
 * Connects now if not connected yet. Fails with RBD_ERR_UNAVAILABLE when no
 * monitor answers within the op timeout and RBD_ERR_PERMISSION when cephx
 * refuses the key (the message names the keyring).
 */
rbd_code rbd_cluster_connect(struct rbd_cluster *cluster,
                             struct rbd_error *err);

/*
 * Opens the RADOS namespace of one user: `ns` (normally the username, or
 * the expanded rbd_namespace), or the configured rbd_namespace when NULL.
 * Connects if needed, and checks once per process that the key may read
 * and write the pools there.
 *
 * `command_started` gives the user's calls one deadline per command
 * instead of one per RADOS op: it points at the wall-clock time the
 * caller's current command began (it must stay valid while the user is
 * open; the caller keeps it current, and the core reads it on the calling
 * thread before each op). Every RADOS wait of a command, the access check
 * of this first open included, then ends rbd_op_timeout after that time,
 * whatever number of ops the command needs; resolving a write whose
 * outcome is unknown may read for up to 0.4 s more. NULL gives every op
 * rbd_op_timeout of its own (doveadm's long jobs).
 */
struct timeval;
rbd_code rbd_user_open(struct rbd_cluster *cluster, const char *ns,
                       const struct timeval *command_started,
                       struct rbd_user **user_r, struct rbd_error *err);
void rbd_user_close(struct rbd_user **user);

/*
 * One RADOS op that the user's calls waited for: the plugin's
 * rbd_request_finished events. Strings are static.
 */
struct rbd_op_record {
	/* "read" or "write" */
	const char *op;
	/* "index", "mailbox list", "body", "body chunk", "dictionary",
	   "lease" or "other" */
	const char *object;
	/* Body bytes written or read back; 0 for index ops. */
	uint64_t bytes;
	/* "ok", or what went wrong: "timeout" (the command's deadline; for a
	   write, outcome unknown), "conflict" (a guarded write lost a race),
	   "not_found", "permission", "error" */
	const char *result;
	/* 0, or the RADOS result (a negative errno). */
	int error;
	/* From issue to answer. */
	uint64_t usecs;
};
/*
 * Moves up to `max` records of the ops since the last call into `out`, oldest
 * first, and returns how many. *dropped_r: records lost because nobody
 * drained them (the core keeps a few thousand), reported once.
 */
size_t rbd_user_drain_ops(struct rbd_user *user, struct rbd_op_record *out,
                          size_t max, uint64_t *dropped_r);

/* ------------------------------------------------------------------ */
/* Mailbox list: the user root object `r`                              */

#define RBD_GUID_SIZE 16

struct rbd_mailbox_entry {
	const char *name;
	uint8_t guid[RBD_GUID_SIZE];
	/* Space-separated special-use flags ("\\Sent \\Archive"), or "". */
	const char *special_use;
	int subscribed;
	/* Set for names in the subscription list without a mailbox. */
	int nonexistent;
};

struct rbd_mailbox_entries {
	struct rbd_mailbox_entry *entries;
	size_t count;
};

/*
 * Lists every mailbox and subscription of the user in name order. One read.
 */
rbd_code rbd_list_mailboxes(struct rbd_user *user,
                            struct rbd_mailbox_entries **list_r,
                            struct rbd_error *err);
void rbd_mailbox_entries_free(struct rbd_mailbox_entries **list);

/* Finds one mailbox by name; RBD_ERR_NOT_FOUND if it does not exist. */
rbd_code rbd_lookup_mailbox(struct rbd_user *user, const char *name,
                            uint8_t guid_r[RBD_GUID_SIZE],
                            struct rbd_error *err);

/*
 * Creates a mailbox: its index object first (with `uidvalidity`, or the
 * current time when 0), then its entry in the root, so a crash in between
 * leaves only an unlisted index that gc reclaims. `guid` is chosen by the
 * caller. RBD_ERR_EXISTS if the name is taken.
 */
rbd_code rbd_create_mailbox(struct rbd_user *user, const char *name,
                            const uint8_t guid[RBD_GUID_SIZE],
                            uint32_t uidvalidity, const char *special_use,
                            struct rbd_error *err);

/*
 * Deletes a mailbox: removes its name from the root (the commit point),
 * then its index and the references its records held on message bodies.
 */
rbd_code rbd_delete_mailbox(struct rbd_user *user, const char *name,
                            struct rbd_error *err);

/*
 * Renames `old_name` and every mailbox below it (names starting with
 * old_name followed by `separator`) in one guarded op on the root: either
 * the whole subtree moves or nothing does. RBD_ERR_EXISTS if any target
 * name is taken, RBD_ERR_NOT_FOUND if nothing matches.
 */
rbd_code rbd_rename_mailbox(struct rbd_user *user, const char *old_name,
                            const char *new_name, char separator,
                            struct rbd_error *err);

rbd_code rbd_set_subscribed(struct rbd_user *user, const char *name,
                            int subscribed, struct rbd_error *err);
rbd_code rbd_set_special_use(struct rbd_user *user, const char *name,
                             const char *special_use, struct rbd_error *err);

/* ------------------------------------------------------------------ */
/* Mailbox index: `i.<mailbox-guid>`                                   */

struct rbd_index;

/* System flags, bit-compatible with Dovecot's enum mail_flags. */
#define RBD_FLAG_ANSWERED 0x01
#define RBD_FLAG_FLAGGED 0x02
#define RBD_FLAG_DELETED 0x04
#define RBD_FLAG_SEEN 0x08
#define RBD_FLAG_DRAFT 0x10

struct rbd_index_status {
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highest_modseq;
	uint32_t messages;
	uint64_t virtual_size;
	uint64_t physical_size;
	/* Change-log entries older than this are trimmed. */
	uint64_t log_floor_modseq;
	/* Number of keyword names the mailbox has defined. */
	uint32_t keyword_count;
	/* UIDs at or above this are \Recent: no read-write session has
	   claimed them yet (rbd_index_claim_recent). */
	uint32_t first_recent_uid;
	/* Messages with \Seen, when seen_counted: a mailbox last written by
	   a version before the count has none until `doveadm rbd check
	   --repair` counts its records. */
	uint32_t seen_messages;
	uint8_t seen_counted;
	/* Messages at or above first_recent_uid, when recent_counted: not
	   after a claim that stopped short of UIDNEXT, until one reaches it. */
	uint32_t recent_messages;
	uint8_t recent_counted;
};

/* One message of a mailbox. */
struct rbd_record {
	uint32_t uid;
	uint8_t guid[RBD_GUID_SIZE];
	uint8_t flags;
	/* Keyword names, sorted and unique, NULL-terminated (given to the
	   core: any order, no terminator needed). */
	const char *const *keywords;
	size_t keyword_count;
	uint64_t modseq;
	int64_t received_date;
	int64_t save_date;
	uint64_t physical_size;
	uint64_t virtual_size;
	/* POP3 UIDL, or NULL when not set. */
	const char *pop3_uidl;
	/* The body is carried in the index object, not in `m.<guid>`. */
	int inline_body;
	/* The GUID as saved when it was no 128-bit hex GUID (`guid` is then
	   a hash of it), or NULL. */
	const char *guid_text;
};

struct rbd_records {
	struct rbd_record *records;
	size_t count;
};
void rbd_records_free(struct rbd_records **records);

/* Opens a mailbox index by GUID. RBD_ERR_NOT_FOUND if it does not exist. */
rbd_code rbd_index_open(struct rbd_user *user,
                        const uint8_t guid[RBD_GUID_SIZE],
                        struct rbd_index **mailbox_r, struct rbd_error *err);
/* Opens the mailbox `name`: rbd_lookup_mailbox() and rbd_index_open() in
   one, which reads only the mailbox's state when this connection has
   looked the name up before and the state confirms it (doc/design.md,
   "Names in the state"). RBD_ERR_NOT_FOUND if no such mailbox exists. */
rbd_code rbd_index_open_name(struct rbd_user *user, const char *name,
                             uint8_t guid_r[RBD_GUID_SIZE],
                             struct rbd_index **mailbox_r,
                             struct rbd_error *err);
void rbd_index_close(struct rbd_index **mailbox);

/* Reads UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counts and sizes in one read. */
rbd_code rbd_index_get_status(struct rbd_index *mailbox,
                              struct rbd_index_status *status_r,
                              struct rbd_error *err);

/* The omap keys of a mailbox's index object and of its shards. */
struct rbd_index_keys {
	/* Of the index object: records, inline bodies, change-log entries,
	   expunge marks. */
	uint64_t total;
	/* The change log's length (trimmed to rbd_changelog_max_entries). */
	uint64_t changes;
	/* Sealed shard objects (rbd_shard_uids), and the most keys of one. */
	uint64_t shards;
	uint64_t largest_shard_keys;
};

/*
 * Counts the omap keys of the index object and its shards, page by page
 * (a listing of every key: for doveadm, not for mail sessions). Counts are
 * not one snapshot under concurrent writers.
 */
rbd_code rbd_index_count_keys(struct rbd_index *mailbox,
                              struct rbd_index_keys *keys_r,
                              struct rbd_error *err);

/*
 * The state as of this handle's last read or commit (an append or copy
 * leaves the state it wrote): no I/O. Zeroes before the first read.
 */
void rbd_index_last_status(const struct rbd_index *index,
                           struct rbd_index_status *status_r);

/*
 * Whether the state read or written through this handle in the current
 * command (the command clock of rbd_user_open) names the mailbox `name`:
 * the user's list then gave it that name at that moment, with no read of
 * the list (doc/design.md, "Names in the state"). No I/O. 0 also when the
 * state names no mailbox (a rename or delete may be moving it).
 */
int rbd_index_named(const struct rbd_index *index, const char *name);

/*
 * Binds the handle's client writes (rbd_index_append, rbd_index_copy,
 * rbd_index_update_flags_of, rbd_index_expunge) to `name`: each applies
 * only while the user's list gives the mailbox that name, and fails
 * RBD_ERR_NOT_FOUND once a rename or delete has taken it away. Costs
 * nothing when the state the write is guarded by names the mailbox (doc/
 * design.md, "Names in the state"), one read of the list per command when
 * it names none. No I/O here.
 */
void rbd_index_guard_name(struct rbd_index *index, const char *name);

/*
 * RFC 3501 \Recent across nodes: a message is \Recent in exactly one
 * session, the first read-write session (on any node) to claim it. Raises
 * the mailbox's first recent UID to `up_to` (at most UIDNEXT) in one
 * guarded op; the UIDs in [*first_r, *end_r) are then the caller's alone,
 * never claimed by anyone else. Empty (*first_r == *end_r), and nothing
 * written, when another claim already reached up_to. Callers pass the
 * UIDNEXT of the state they have synced, so every claimed UID is one they
 * have seen (or that was expunged). Read-only sessions, STATUS and doveadm
 * must not call it: they only read first_recent_uid.
 */
rbd_code rbd_index_claim_recent(struct rbd_index *mailbox, uint32_t up_to,
                                uint32_t *first_r, uint32_t *end_r,
                                struct rbd_error *err);

/* A message to append. Exactly one of `body` or `stored` supplies the body. */
struct rbd_new_message {
	uint8_t guid[RBD_GUID_SIZE];
	/*
	 * The whole body, when the caller has it in memory. Bodies up to
	 * rbd_inline_max travel inline in the index op (one RADOS write per
	 * APPEND); larger ones are written to `m.<guid>` first, all in
	 * parallel, before the index op publishes their records.
	 */
	const void *body;
	size_t body_size;
	/*
	 * The body is already in `m.<guid>` (written with rbd_body_write or a
	 * body writer, or shared with the message being copied): the append
	 * takes a reference on it before the record is published.
	 */
	int stored;
	/*
	 * With `stored`: the body was just written by this caller, and the
	 * reference it was written with is this record's. The append takes
	 * none; if nothing is published it drops that one (gc then reclaims
	 * the body).
	 */
	int referenced;
	uint8_t flags;
	const char *const *keywords;
	size_t keyword_count;
	int64_t received_date;
	int64_t save_date;
	uint64_t physical_size;
	uint64_t virtual_size;
	const char *pop3_uidl;
	/* A GUID that is no 128-bit hex GUID, kept as given (`guid` holds a
	   hash of it), or NULL. */
	const char *guid_text;
	/* The UID wanted, or 0. */
	uint32_t uid;
};

/*
 * Appends `count` messages in one guarded op: allocates UIDs atomically
 * (uids_r[i] for messages[i]) and inserts their records with a new MODSEQ.
 * A wanted UID at or above UIDNEXT is given; the other messages get
 * consecutive UIDs after the highest UID given. Retries on a lost race;
 * notifies watchers after commit.
 */
rbd_code rbd_index_append(struct rbd_index *mailbox,
                          const struct rbd_new_message *messages, size_t count,
                          uint32_t *uids_r, struct rbd_error *err);
/*
 * rbd_index_append() that also claims \Recent (rbd_index_claim_recent) up
 * to the UIDNEXT it leaves, in the same guarded op: for a read-write
 * session that has the mailbox selected, whose next sync brings every
 * message below that UIDNEXT into its view (imap's APPEND to the selected
 * mailbox). [*first_r, *end_r) is what it claimed: the messages it added,
 * and older ones nobody had claimed. Empty on failure.
 */
rbd_code rbd_index_append_claiming(struct rbd_index *mailbox,
                                   const struct rbd_new_message *messages,
                                   size_t count, uint32_t *uids_r,
                                   uint32_t *first_r, uint32_t *end_r,
                                   struct rbd_error *err);

/*
 * Copies messages of `source` (by UID) into `dest` without re-uploading a
 * body: stored bodies gain a reference, inline bodies are carried over in
 * the destination op. `flags`/`keywords` of each copy come from the
 * source record unless `override` is set, then from the arrays given.
 * dest_uids_r[i] receives the new UID of source_uids[i], or 0 when that
 * message was expunged meanwhile (its record is gone and not shown, or its
 * body is gone from the store). With `overrides` (a session's COPY) the
 * copy is all or nothing, as Dovecot's is: if any message was expunged,
 * nothing is copied and every dest_uids_r[i] is 0.
 */
struct rbd_copy_override {
	uint8_t flags;
	const char *const *keywords;
	size_t keyword_count;
	/* The UID wanted for the copy, or 0 (see rbd_index_append). */
	uint32_t uid;
	/* What the caller's session still shows of the source message, or
	   NULL. When its record is gone (another session expunged it since)
	   the copy is made from this, as long as gc has not reclaimed the
	   body (rbd_user_gc); dest_uids_r[i] is 0 once it has. */
	const struct rbd_record *shown;
};
rbd_code rbd_index_copy(struct rbd_index *source, const uint32_t *source_uids,
                        size_t count, struct rbd_index *dest,
                        const struct rbd_copy_override *overrides,
                        uint32_t *dest_uids_r, struct rbd_error *err);

/*
 * A flag change as add/remove sets (how Dovecot's transactions carry them;
 * a REPLACE is "add these, remove all others"). Removal wins over addition.
 */
struct rbd_flag_update {
	uint8_t add_flags;
	uint8_t remove_flags;
	/* Keyword names; new names are added to the keyword table. */
	const char *const *add_keywords;
	size_t add_keyword_count;
	const char *const *remove_keywords;
	size_t remove_keyword_count;
	/* When non-zero, skip messages whose MODSEQ is above this. */
	uint64_t unchanged_since;
};

/*
 * MODSEQs: an op advances HIGHESTMODSEQ by the number of records Dovecot's
 * transaction log writes when a node replays it -- 1 for an append, an
 * expunge or any system-flag change, plus 1 per distinct keyword added and
 * per distinct keyword removed -- so that every node's local MODSEQ
 * counter equals the cluster's.
 *
 * Updates flags of `count` UIDs in one guarded op with a new MODSEQ.
 * Messages whose MODSEQ is above unchanged_since are not changed; their
 * UIDs are returned in conflicts_r (free with rbd_uids_free).
 * UIDs that do not exist are ignored. modseq_r receives the op's MODSEQ,
 * or 0 when nothing changed (then no op was committed: the current
 * HIGHESTMODSEQ may be another writer's op).
 */
rbd_code rbd_index_update_flags(struct rbd_index *mailbox, const uint32_t *uids,
                                size_t count,
                                const struct rbd_flag_update *update,
                                uint32_t **conflicts_r,
                                size_t *conflict_count_r, uint64_t *modseq_r,
                                struct rbd_error *err);
/* The changes of one transaction (each an update of its own UIDs) in ONE
   guarded op, applied in their order: the client's transaction either
   takes effect whole or not at all. Otherwise as rbd_index_update_flags. */
struct rbd_flag_change {
	const uint32_t *uids;
	size_t uid_count;
	struct rbd_flag_update update;
};
rbd_code rbd_index_update_flags_of(struct rbd_index *mailbox,
                                   const struct rbd_flag_change *changes,
                                   size_t count, uint32_t **conflicts_r,
                                   size_t *conflict_count_r,
                                   uint64_t *modseq_r, struct rbd_error *err);
void rbd_uids_free(uint32_t **uids);

/*
 * Expunges `count` UIDs in one guarded op, then drops the references their
 * records held on stored bodies. No body is deleted: stored and inline
 * bodies stay readable (rbd_index_read_body) until rbd_user_gc reclaims
 * them after the grace period, for sessions that still show the messages.
 * The UIDs that existed, the ones this call removed, go to `expunged_r`
 * (room for `count`; may be NULL) and their number to *expunged_count_r:
 * of two sessions expunging one message, exactly one is told it did.
 */
rbd_code rbd_index_expunge(struct rbd_index *mailbox, const uint32_t *uids,
                           size_t count, uint32_t *expunged_r,
                           size_t *expunged_count_r, struct rbd_error *err);

/*
 * Gives those of `count` UIDs that exist one new MODSEQ, at least
 * `min_modseq`, in one guarded op that changes nothing else; every node
 * that syncs lands each of them exactly on it. *modseq_r: that MODSEQ, or 0
 * when none of them exists (nothing was written).
 */
rbd_code rbd_index_touch(struct rbd_index *mailbox, const uint32_t *uids,
                         size_t count, uint64_t min_modseq, uint64_t *modseq_r,
                         struct rbd_error *err);

/*
 * Changes answered with RBD_ERR_UNKNOWN: an append or copy (the messages it
 * would have added) or a flag update may still take effect after the call
 * returned, as the cluster applies an op it held. The user keeps what each
 * did; the next update or rbd_index_changes() on that mailbox first reads
 * whether it took effect and, if it did, undoes it with a new change
 * (expunges the messages; restores the flags of messages nothing changed
 * since), so that the failure the caller reported becomes true. An
 * expunge is never undone.
 */
enum rbd_settlement {
	/* It never took effect. */
	RBD_SETTLED_NOT_APPLIED,
	/* It took effect after the failure, and was undone. */
	RBD_SETTLED_UNDONE,
	/* The cluster could not tell before the session ended, and nobody
	   kept it: it may have taken effect. */
	RBD_SETTLED_UNCHECKED,
	/* The cluster could not tell before the session ended: handed to the
	   caller to keep for a later process (rbd_user_take_unsettled). */
	RBD_SETTLED_KEPT,
};
struct rbd_settled {
	uint8_t mailbox_guid[RBD_GUID_SIZE];
	/* The MODSEQ the change would have taken. */
	uint64_t modseq;
	enum rbd_settlement outcome;
};
/* Moves up to `max` settlements since the last call into `out`, oldest
   first, and returns how many. */
size_t rbd_user_drain_settled(struct rbd_user *user, struct rbd_settled *out,
                              size_t max);
/* Settles what is left on every mailbox, within the command's deadline;
   what the cluster cannot tell yet stays for a later call. Reads nothing
   while the user's last RADOS op timed out (the cluster is away). */
void rbd_user_settle(struct rbd_user *user);
/* For the end of a session, after rbd_user_settle(): moves the changes the
   cluster could not tell about out of the user. With `kept_r`, encoded into
   *kept_r (NULL when there are none; free with rbd_buffer_free) for the
   caller to keep where the user's next process finds it, and reported
   RBD_SETTLED_KEPT; without, reported RBD_SETTLED_UNCHECKED and dropped. */
void rbd_user_take_unsettled(struct rbd_user *user,
                             struct rbd_buffer **kept_r);
/* Adds changes an earlier process kept (rbd_user_take_unsettled): they are
   settled by the next update or change read on their mailbox, or by
   rbd_user_settle(). RBD_ERR_CORRUPT if `data` is not such a list. */
rbd_code rbd_user_add_unsettled(struct rbd_user *user, const void *data,
                                size_t size, struct rbd_error *err);

/* Reads up to `max` records with UID > after_uid, in UID order. */
rbd_code rbd_index_list_records(struct rbd_index *mailbox, uint32_t after_uid,
                                size_t max, struct rbd_records **records_r,
                                struct rbd_error *err);

/* Reads the records of the given UIDs (missing UIDs are left out). */
rbd_code rbd_index_lookup_records(struct rbd_index *mailbox,
                                  const uint32_t *uids, size_t count,
                                  struct rbd_records **records_r,
                                  struct rbd_error *err);

/*
 * Reads every record and the mailbox state they are at (*status_r), `page`
 * records per RADOS read (0: as many as one read returns), without holding
 * writers back: the records read before a writer's commit are brought
 * forward over it, so all of them end at the state of the last read.
 * *keywords_r lists every keyword name defined (also those no message
 * carries any more), in the order they were first set on a message,
 * NULL-terminated (the only read whose cost grows with the names a mailbox
 * has ever seen), valid until the next listing on the handle. keywords_r
 * NULL: the names are not read (keyword_count_r is then unused).
 * RBD_ERR_CONFLICT only when the change log was trimmed past the listing
 * under every attempt within the op timeout.
 */
rbd_code rbd_index_list_all(struct rbd_index *mailbox, size_t page,
                            struct rbd_records **records_r,
                            struct rbd_index_status *status_r,
                            const char *const **keywords_r,
                            size_t *keyword_count_r, struct rbd_error *err);

/* A message's flags and keywords as a flag change left them. */
struct rbd_flag_state {
	uint32_t uid;
	uint8_t flags;
	/* As rbd_record.keywords. */
	const char *const *keywords;
	size_t keyword_count;
};

/*
 * One committed op, at its MODSEQ: it appended messages, changed flags or
 * keywords of messages, or expunged messages (one kind per op), or only
 * raised HIGHESTMODSEQ (all empty). Each message it changed or appended
 * has the op's MODSEQ. The op's MODSEQ step (this MODSEQ minus the
 * previous op's) is the number of records Dovecot's transaction log
 * writes when exactly this op is replayed by its differences: one for the
 * appends, one for any system flag change, one for the expunges, one per
 * distinct keyword added and per distinct keyword removed.
 */
struct rbd_change {
	uint64_t modseq;
	/* The new records, ascending UIDs. */
	const struct rbd_record *appended;
	size_t appended_count;
	/* Messages whose flags or keywords changed, ascending UIDs. */
	const struct rbd_flag_state *updated;
	size_t updated_count;
	/* Expunged UIDs, ascending. */
	const uint32_t *expunged;
	size_t expunged_count;
	/* Keyword names the op defined, in the order they were set (the order
	   the writer's node learnt them), NULL-terminated. */
	const char *const *defined;
	size_t defined_count;
};

struct rbd_changes {
	/* Every op after the MODSEQ asked for, ascending, up to
	   status.highest_modseq and never above it. */
	const struct rbd_change *ops;
	size_t op_count;
	/* The mailbox state the ops lead to, read in the same snapshot. */
	struct rbd_index_status status;
};
/*
 * Reads what changed after `since_modseq`, as one snapshot: the state and
 * the change log from one read (further log pages only while the state is
 * unchanged; a lost race reads again within the op timeout). Returns
 * RBD_ERR_RESYNC when the log cannot bring a cache forward from
 * since_modseq (trimmed past it, or written by an older version): the
 * caller must then list all records (rbd_index_list_all).
 */
rbd_code rbd_index_changes(struct rbd_index *mailbox, uint64_t since_modseq,
                           struct rbd_changes **changes_r,
                           struct rbd_error *err);
void rbd_changes_free(struct rbd_changes **changes);

/*
 * Removes change-log entries at or below `up_to_modseq` now (every commit
 * already trims the log to rbd_changelog_max_entries and
 * rbd_changelog_max_age). Readers behind that point get RBD_ERR_RESYNC.
 */
rbd_code rbd_index_trim_log(struct rbd_index *mailbox, uint64_t up_to_modseq,
                            struct rbd_error *err);

/* ------------------------------------------------------------------ */
/* Migration: what dsync asks of a mailbox beside its messages         */

/*
 * Sets UIDVALIDITY (unless 0) and raises UIDNEXT and HIGHESTMODSEQ to at
 * least min_uidnext and min_highest_modseq, in one guarded op. UIDVALIDITY
 * changes only while the mailbox has no message records: RBD_ERR_INVALID
 * otherwise. A UIDVALIDITY set here is never given to a mailbox the user
 * creates later (the user's last UIDVALIDITY is raised to it first).
 */
rbd_code rbd_index_update_state(struct rbd_index *mailbox, uint32_t uidvalidity,
                                uint32_t min_uidnext,
                                uint64_t min_highest_modseq,
                                struct rbd_error *err);

/*
 * Gives the empty mailbox `name` the GUID `guid`: its state (UIDVALIDITY,
 * UIDNEXT, HIGHESTMODSEQ) moves to a new index object, which replaces the
 * old one in the mailbox list. RBD_ERR_INVALID if the mailbox has
 * messages, RBD_ERR_EXISTS if an index of that GUID exists. Handles open
 * on the old GUID fail with RBD_ERR_NOT_FOUND afterwards.
 */
rbd_code rbd_change_mailbox_guid(struct rbd_user *user, const char *name,
                                 const uint8_t guid[RBD_GUID_SIZE],
                                 struct rbd_error *err);

/* ------------------------------------------------------------------ */
/* Message bodies                                                      */

struct rbd_buffer {
	void *data;
	size_t size;
};
void rbd_buffer_free(struct rbd_buffer **buffer);

/*
 * Reads `length` bytes of a message body at `offset` (length 0 = to the
 * end). Inline bodies come from the index, stored ones from `m.<guid>`;
 * a striped body reads only the chunks covering the range. A read of the
 * whole body is checked against the stored XXH3 checksum
 * (RBD_ERR_CORRUPT on mismatch).
 */
rbd_code rbd_index_read_body(struct rbd_index *mailbox,
                             const struct rbd_record *record, uint64_t offset,
                             uint64_t length, struct rbd_buffer **body_r,
                             struct rbd_error *err);

/*
 * Reads the whole bodies of `count` records with all reads in flight at
 * once (read-ahead for a FETCH of many bodies). bodies_r[i] is NULL when
 * that body failed; the first failure is returned.
 */
rbd_code rbd_index_read_bodies(struct rbd_index *mailbox,
                               const struct rbd_record *records, size_t count,
                               struct rbd_buffer **bodies_r,
                               struct rbd_error *err);

/*
 * Reads a message body by range, so that a partial FETCH of a large
 * message reads only what it returns: open reads the body's metadata and
 * first bytes in one op (an inline body: the whole body) and gives its size;
 * each read then reads only the chunks it covers. Reads that cover the
 * body front to back, in order, are checked against its XXH3 checksum when
 * they reach the end (RBD_ERR_CORRUPT). RBD_ERR_NOT_FOUND when gc has
 * reclaimed the body.
 */
struct rbd_body_reader;
rbd_code rbd_body_reader_open(struct rbd_index *mailbox,
                              const struct rbd_record *record,
                              struct rbd_body_reader **reader_r,
                              uint64_t *size_r, struct rbd_error *err);
/* Reads up to `size` bytes at `offset` into `buf`; *read_r is less than
   `size` only at the end of the body. */
rbd_code rbd_body_reader_read(struct rbd_body_reader *reader, uint64_t offset,
                              void *buf, size_t size, size_t *read_r,
                              struct rbd_error *err);
void rbd_body_reader_free(struct rbd_body_reader **reader);

/* Storage-side metadata kept with every stored body (disaster recovery). */
struct rbd_body_info {
	uint64_t size;
	uint64_t xxh3;
	uint8_t first_mailbox_guid[RBD_GUID_SIZE];
	int64_t received_date;
	int64_t save_date;
	uint32_t references;
	uint32_t chunks;
};

/*
 * Writes a whole body to `m.<guid>` with its metadata and one reference
 * (owned by the record the caller is about to append with stored=1). One
 * RADOS op when the body is below rbd_stripe_size; above it, the body is
 * split into chunk objects `m.<guid>.<n>` written in parallel, then the
 * head object. RBD_ERR_EXISTS if the GUID is taken.
 */
rbd_code rbd_body_write(struct rbd_user *user,
                        const uint8_t guid[RBD_GUID_SIZE], const void *data,
                        size_t size, const struct rbd_body_info *info,
                        struct rbd_error *err);

/*
 * Streams a body to `m.<guid>` with bounded memory (the first
 * rbd_stripe_size bytes and a few MiB in flight), whatever its size. The
 * body is published by finish (with one reference, as rbd_body_write);
 * chunks written before a failure are removed by free, or by gc when the
 * process died.
 */
struct rbd_body_writer;
rbd_code rbd_body_writer_open(struct rbd_user *user,
                              const uint8_t guid[RBD_GUID_SIZE],
                              struct rbd_body_writer **writer_r,
                              struct rbd_error *err);
rbd_code rbd_body_writer_write(struct rbd_body_writer *writer, const void *data,
                               size_t size, struct rbd_error *err);
/* Writes the head object; `info->size`/`xxh3` are computed here.
   RBD_ERR_UNAVAILABLE also when the body took half of rbd_gc_grace to
   arrive (gc may have reclaimed its first chunks meanwhile). */
rbd_code rbd_body_writer_finish(struct rbd_body_writer *writer,
                                const struct rbd_body_info *info,
                                struct rbd_error *err);
/* Frees the writer; removes the chunks already written unless finished. */
void rbd_body_writer_free(struct rbd_body_writer **writer);

rbd_code rbd_body_stat(struct rbd_user *user, const uint8_t guid[RBD_GUID_SIZE],
                       struct rbd_body_info *info_r, struct rbd_error *err);

/*
 * Drops one reference from `m.<guid>`. Used after a record referencing it
 * is gone. A body left without references stays until rbd_user_gc.
 */
rbd_code rbd_body_unref(struct rbd_user *user,
                        const uint8_t guid[RBD_GUID_SIZE],
                        struct rbd_error *err);

/* ------------------------------------------------------------------ */
/* Watch / notify                                                      */

struct rbd_watch;

/* Sync now: the object changed, or the watch is back after a loss (a change
   in the gap sent no notify), or the object is gone. */
#define RBD_WATCH_CHANGED 0x1
/* The watch is lost and being registered again in the background. No sync
   yet: it would wait for the same OSD; RBD_WATCH_CHANGED follows once the
   cluster has answered. */
#define RBD_WATCH_LOST 0x2

/* How long rbd_watch_open() tells writers the mailbox is watched for. */
#define RBD_WATCHED_SECS 1800

/*
 * Watches a mailbox index. Every committed change by any process makes
 * rbd_watch_fd() readable; librados threads only write to that fd. Tells
 * writers that the mailbox is watched (rbd_index_keep_watched) for
 * RBD_WATCHED_SECS: a write notifies only while some session has said so.
 */
rbd_code rbd_watch_open(struct rbd_index *mailbox, struct rbd_watch **watch_r,
                        struct rbd_error *err);
/*
 * Tells writers that a session watches the mailbox for at least `seconds`
 * more (the state's watched_until, doc/design.md "Notify only the
 * watched"). No I/O while the state this handle last saw says so already;
 * otherwise one guarded write, of twice as long. A session that watches
 * longer than RBD_WATCHED_SECS calls it as it goes (at each poll), and
 * before its watch lingers (rbd_watch_close_lingering).
 */
rbd_code rbd_index_keep_watched(struct rbd_index *mailbox, uint32_t seconds,
                                struct rbd_error *err);
/*
 * Watches the user's mailbox list (the root object `r`): every committed
 * create, delete, rename, subscription or special-use change by any process
 * makes rbd_watch_fd() readable. RBD_ERR_NOT_FOUND while the user has no
 * mailbox list yet (no mailbox was ever created): watch again later.
 */
rbd_code rbd_watch_open_list(struct rbd_user *user, struct rbd_watch **watch_r,
                             struct rbd_error *err);
/* A file descriptor that becomes readable when something happened. */
int rbd_watch_fd(const struct rbd_watch *watch);
/*
 * Clears the fd and returns RBD_WATCH_* bits of what happened since the
 * last call. The caller syncs on RBD_WATCH_CHANGED only.
 */
unsigned int rbd_watch_consume(struct rbd_watch *watch);
void rbd_watch_close(struct rbd_watch **watch);
/*
 * For a session that imap-hibernate takes over: closes the handle but
 * keeps watching for `seconds` more, writing a byte to `fd` (a file the
 * hibernated client watches with inotify; given over, closed at the end)
 * at every change, and once a lost watch is registered again (not at the
 * loss: the woken session could not open its mailbox then), and once more
 * at the end, so that the client wakes and its next process watches again.
 */
void rbd_watch_close_lingering(struct rbd_watch **watch, int fd,
                               unsigned int seconds);

/* ------------------------------------------------------------------ */
/* Leases and maintenance                                              */

struct rbd_lease;

/*
 * Takes the exclusive lease `name` of the user for `duration_ms`
 * (cls_lock with an expiry; the cookie names host and pid). RBD_ERR_BUSY
 * while another holder's lease has not expired.
 */
rbd_code rbd_lease_acquire(struct rbd_user *user, const char *name,
                           uint32_t duration_ms, struct rbd_lease **lease_r,
                           struct rbd_error *err);
/* Extends the lease by its duration; RBD_ERR_BUSY if it was lost. */
rbd_code rbd_lease_renew(struct rbd_lease *lease, struct rbd_error *err);
/* Releases the lease (if still held) and frees the handle. */
void rbd_lease_release(struct rbd_lease **lease);

struct rbd_gc_stats {
	uint64_t bodies_scanned;
	uint64_t bodies_reclaimed;
	uint64_t bodies_in_grace;
	uint64_t indexes_reclaimed;
};

/*
 * Reclaims the user's bodies that no record references and whose last
 * reference change is older than `grace_seconds` (the only way a body is
 * ever removed: an expunge only releases it, for sessions that still show
 * the message), and index objects that no mailbox name points to. The
 * counts include the inline bodies of expunged messages. Runs under the
 * user's "gc" lease.
 */
rbd_code rbd_user_gc(struct rbd_user *user, uint32_t grace_seconds,
                     struct rbd_gc_stats *stats_r, struct rbd_error *err);

enum rbd_problem_kind {
	/* A record whose stored body object is gone. */
	RBD_PROBLEM_MISSING_BODY,
	/* A mailbox's message count, sizes or UIDNEXT disagree with its
	   records. */
	RBD_PROBLEM_WRONG_COUNTERS,
	/* A body no record references that still counts references (a crash
	   between its reference and its record), unchanged for the grace
	   period. Released bodies (no references left) are gc's ordinary
	   work, not a problem. */
	RBD_PROBLEM_UNREFERENCED_BODY,
};

struct rbd_problem {
	enum rbd_problem_kind kind;
	uint8_t mailbox_guid[RBD_GUID_SIZE]; /* zero for unreferenced bodies */
	uint32_t uid;                        /* 0 unless a missing body */
	uint8_t body_guid[RBD_GUID_SIZE];    /* zero for wrong counters */
	const char *detail;                  /* one line for the operator */
	int repaired;
};

struct rbd_problems {
	struct rbd_problem *problems;
	size_t count;
};

/*
 * Checks every mailbox of the user against the bodies (see checker.h):
 * records whose body is gone, counters that disagree with the records,
 * bodies no record references for `grace_seconds`. With `repair`, expunges
 * the bodiless records, rewrites the counters and reclaims the bodies (as
 * rbd_user_gc does, under its lease: RBD_ERR_BUSY while gc runs). Free the
 * result with rbd_problems_free().
 */
rbd_code rbd_user_check(struct rbd_user *user, int repair,
                        uint32_t grace_seconds,
                        struct rbd_problems **problems_r,
                        struct rbd_error *err);
void rbd_problems_free(struct rbd_problems **problems);

struct rbd_object {
	const char *pool;
	const char *name;
	uint64_t size;
	/* "mailbox list", "index", "body", "body chunk", "lease", "dictionary"
	   or "other". */
	const char *kind;
};

struct rbd_objects {
	struct rbd_object *objects;
	size_t count;
};

/*
 * Lists the user's objects in both pools with their sizes (one stat per
 * object). Free the result with rbd_objects_free().
 */
rbd_code rbd_user_list_objects(struct rbd_user *user,
                               struct rbd_objects **objects_r,
                               struct rbd_error *err);
void rbd_objects_free(struct rbd_objects **objects);

struct rbd_rebuild_stats {
	uint64_t mailboxes_recreated;
	uint64_t messages_recovered;
};

/*
 * Recreates lost mailbox index objects from the stored bodies' metadata
 * (see rebuilder.h): each with a new UIDVALIDITY, under its listed name or
 * "Recovered/<guid>", one record per body no record of any mailbox
 * references. Flags, keywords and inline bodies are not recoverable. Runs under
 * the user's "gc" lease (RBD_ERR_BUSY while gc runs). A no-op when no index is
 * lost.
 */
rbd_code rbd_user_rebuild(struct rbd_user *user,
                          struct rbd_rebuild_stats *stats_r,
                          struct rbd_error *err);
/*
 * The same for one mailbox only, and only while a name still lists it:
 * RBD_ERR_NOT_FOUND when it was deleted (not lost). A body is recovered
 * into it only when no record of any mailbox references it.
 */
rbd_code rbd_mailbox_rebuild(struct rbd_user *user,
                             const uint8_t guid[RBD_GUID_SIZE],
                             struct rbd_rebuild_stats *stats_r,
                             struct rbd_error *err);

/* ------------------------------------------------------------------ */
/* Dictionary: key-value pairs in the omap of object `d`               */

struct rbd_dict_store;

/*
 * Opens the dictionary object `d` in namespace `ns` of the index pool:
 * each user namespace has its own, and "" (the pool's default namespace,
 * which no user's storage uses) is where keys shared by all users live.
 * Connects if needed. The object need not exist: reads find nothing and
 * the first commit that writes creates it. `command_started`: as for
 * rbd_user_open(), so that a command's dictionary calls end by its one
 * deadline with its other calls (NULL: rbd_op_timeout per op).
 */
rbd_code rbd_dict_store_open(struct rbd_cluster *cluster, const char *ns,
                             const struct timeval *command_started,
                             struct rbd_dict_store **store_r,
                             struct rbd_error *err);
void rbd_dict_store_close(struct rbd_dict_store **store);

/* Reads one value (one read). RBD_ERR_NOT_FOUND if the key does not exist;
   a cluster that does not answer is RBD_ERR_UNAVAILABLE, never that. */
rbd_code rbd_dict_store_lookup(struct rbd_dict_store *store, const char *key,
                               struct rbd_buffer **value_r,
                               struct rbd_error *err);

struct rbd_dict_entry {
	const char *key;
	const char *value;
};

struct rbd_dict_entries {
	struct rbd_dict_entry *entries;
	size_t count;
	/* Set when a call with after = the last key returned may find more. */
	int more;
};

/*
 * Lists up to `max` entries whose key starts with `prefix` and sorts after
 * `after` ("" = from the first), in bytewise key order (one read; the OSD
 * may return fewer than `max` and set `more`). Free the result with
 * rbd_dict_entries_free().
 */
rbd_code rbd_dict_store_list(struct rbd_dict_store *store, const char *prefix,
                             const char *after, size_t max,
                             struct rbd_dict_entries **entries_r,
                             struct rbd_error *err);
void rbd_dict_entries_free(struct rbd_dict_entries **entries);

enum rbd_dict_op {
	RBD_DICT_SET,
	RBD_DICT_UNSET,
	/* Adds `diff` to a decimal integer value. */
	RBD_DICT_INC,
};

struct rbd_dict_change {
	enum rbd_dict_op op;
	const char *key;
	const char *value; /* RBD_DICT_SET */
	int64_t diff;      /* RBD_DICT_INC */
	/* RBD_DICT_SET and RBD_DICT_UNSET with `guarded` set: apply only if
	   the key still holds `expected` (NULL: the key does not exist). */
	int guarded;
	const char *expected;
};

/*
 * Applies `changes` in order as ONE write op: all of them or none. An INC
 * is atomic across every process and node (the op is guarded by the value
 * it read; a lost race re-reads and retries). An INC of a key that does
 * not exist changes nothing and sets *inc_missed_r; the other changes are
 * still applied. RBD_ERR_INVALID (nothing applied) when an INC finds a
 * value that is not an integer or would overflow; RBD_ERR_CONFLICT after
 * losing races for the whole op timeout, and at once (nothing applied)
 * when a guarded change finds another value than it expected;
 * RBD_ERR_UNAVAILABLE when the cluster does not answer, and then the op may or
 * may not have applied.
 */
rbd_code rbd_dict_store_commit(struct rbd_dict_store *store,
                               const struct rbd_dict_change *changes,
                               size_t count, int *inc_missed_r,
                               struct rbd_error *err);

/*
 * Copies into `store`'s dictionary, once per namespace, the entries of the
 * dictionary in namespace `legacy_ns` whose key is `prefix`, the GUID (32
 * lower-case hex digits) of one of the namespace's mailboxes, "/" and
 * more: keys that older versions kept where all users shared them. Later
 * calls cost one read. Legacy entries are left in place. Errors as for
 * rbd_dict_store_lookup(); nothing is copied then, and the next call tries
 * again.
 */
rbd_code rbd_dict_store_adopt(struct rbd_dict_store *store,
                              const char *legacy_ns, const char *prefix,
                              struct rbd_error *err);

#ifdef __cplusplus
}
#endif

#endif
