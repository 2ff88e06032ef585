/* The storage class and the mailbox vtable: settings, connection, and the
   mailbox life cycle (open, create, delete, rename, status). */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "time-util.h"
#include "mail-copy.h"
#include "index-mail.h"
#include "mail-index-alloc-cache.h"
#include "mail-index-modseq.h"
#include "mail-search-build.h"
#include "mailbox-list-iter.h"
#include "settings-parser.h"
#include "rbd-mail-storage.h"

/* How long after a cluster timeout further operations fail at once. */
#define RBD_UNAVAILABLE_FAST_FAIL_SECS 2

struct rbd_transaction_module rbd_transaction_module =
        MODULE_CONTEXT_INIT(&mail_storage_module_register);

extern struct mailbox rbd_mailbox;

static const char *const rbd_setting_names[] = {
        "rbd_ceph_conf",
        "rbd_ceph_user",
        "rbd_pool",
        "rbd_index_pool",
        "rbd_namespace",
        "rbd_op_timeout",
        "rbd_inline_max",
        "rbd_stripe_size",
        "rbd_gc_grace",
        "rbd_max_message_size",
        "rbd_changelog_max_entries",
        "rbd_changelog_max_age",
        "rbd_shard_uids",
        "rbd_service",
        NULL,
};

/* Every event of the storage and its mailboxes carries it:
   log_debug = category=rbd, and metric filters, select this storage. */
struct event_category event_category_rbd = {
        .parent = &event_category_storage,
        .name = "rbd",
};

static struct mail_storage *rbd_storage_alloc(void)
{
	struct rbd_storage *storage;
	pool_t pool;

	pool = pool_alloconly_create("rbd storage", 512);
	storage = p_new(pool, struct rbd_storage, 1);
	storage->storage = rbd_storage;
	storage->storage.pool = pool;
	return &storage->storage;
}

/* Levenshtein distance of a and b; UINT_MAX if b is unusually long. */
static unsigned int rbd_edit_distance(const char *a, const char *b)
{
	unsigned int row[64], i, j, diagonal, above;
	size_t b_len = strlen(b);

	if (b_len >= N_ELEMENTS(row))
		return UINT_MAX;
	for (j = 0; j <= b_len; j++)
		row[j] = j;
	for (i = 1; a[i - 1] != '\0'; i++) {
		diagonal = row[0];
		row[0] = i;
		for (j = 1; j <= b_len; j++) {
			above = row[j];
			row[j] = I_MIN(I_MIN(above, row[j - 1]) + 1,
			               diagonal +
			                       (a[i - 1] == b[j - 1] ? 0 : 1));
			diagonal = above;
		}
	}
	return row[b_len];
}

/* A misspelt setting would otherwise be silently ignored and its default
   used: warn about every rbd_* plugin setting this plugin does not know,
   naming the known one closest to it. Once per process. */
static void rbd_warn_unknown_settings(struct mail_user *user)
{
	static bool warned = FALSE;
	const char *const *envs, *closest;
	unsigned int i, j, count, distance, best;

	if (warned || !array_is_created(&user->set->plugin_envs))
		return;
	warned = TRUE;
	envs = array_get(&user->set->plugin_envs, &count);
	for (i = 0; i + 1 < count; i += 2) {
		if (!str_begins(envs[i], "rbd_") ||
		    str_array_find(rbd_setting_names, envs[i]))
			continue;
		closest = rbd_setting_names[0];
		best = UINT_MAX;
		for (j = 0; rbd_setting_names[j] != NULL; j++) {
			distance = rbd_edit_distance(envs[i],
			                             rbd_setting_names[j]);
			if (distance < best) {
				best = distance;
				closest = rbd_setting_names[j];
			}
		}
		e_warning(user->event,
		          "rbd: unknown setting %s ignored (did you mean %s? "
		          "known: %s)",
		          envs[i], closest,
		          t_strarray_join(rbd_setting_names, " "));
	}
}

int rbd_user_config(struct mail_user *user, struct rbd_config **config_r,
                    const char **error_r)
{
	struct rbd_config *config;
	struct rbd_error err;
	const char *value;
	unsigned int i;

	rbd_warn_unknown_settings(user);
	config = rbd_config_new();
	rbd_config_set_default_service(config, user->set->base_dir);
	for (i = 0; rbd_setting_names[i] != NULL; i++) {
		value = mail_user_plugin_getenv(user, rbd_setting_names[i]);
		if (value == NULL)
			continue;
		if (rbd_config_set(config, rbd_setting_names[i], value, &err) !=
		    RBD_OK) {
			*error_r = t_strdup(err.message);
			rbd_config_free(&config);
			return -1;
		}
	}
	*config_r = config;
	return 0;
}

void rbd_config_set_default_service(struct rbd_config *config,
                                    const char *base_dir)
{
	struct rbd_error err;

	if (rbd_config_set(config, "rbd_service",
	                   t_strconcat(base_dir, "/rbd", NULL), &err) != RBD_OK)
		i_unreached();
}

const char *rbd_user_namespace(struct mail_user *user)
{
	const char *value = mail_user_plugin_getenv(user, "rbd_namespace");

	return value != NULL && *value != '\0' ? value : user->username;
}

/* The largest message a save accepts: rbd_max_message_size, else
   Dovecot's own quota_max_mail_size (which the quota plugin also enforces,
   when loaded), else RBD_DEFAULT_MAX_MESSAGE_SIZE. */
static int rbd_storage_max_message_size(struct rbd_storage *storage,
                                        const char **error_r)
{
	const char *value, *error;

	storage->max_message_size =
	        rbd_config_max_message_size(storage->config);
	if (storage->max_message_size != 0)
		return 0;
	storage->max_message_size = RBD_DEFAULT_MAX_MESSAGE_SIZE;
	value = mail_user_plugin_getenv(storage->storage.user,
	                                "quota_max_mail_size");
	if (value == NULL || *value == '\0')
		return 0;
	if (settings_get_size(value, &storage->max_message_size, &error) < 0) {
		*error_r = t_strdup_printf("quota_max_mail_size: %s", error);
		return -1;
	}
	if (storage->max_message_size == 0)
		storage->max_message_size = RBD_DEFAULT_MAX_MESSAGE_SIZE;
	return 0;
}

/* Dovecot's settings this storage cannot honour. mail_attachment_dir is
   dbox's single-instance store on a shared file system: a node-local
   directory would hold attachments the other nodes cannot read, so it is
   refused rather than ignored. FTS keeps its index beside Dovecot's index,
   so with INDEX=MEMORY the fts plugin switches itself off without a word:
   said here, once per session. */
static int rbd_storage_check_settings(struct mail_storage *storage,
                                      struct mail_namespace *ns,
                                      const char **error_r)
{
	const char *fts = mail_user_plugin_getenv(storage->user, "fts");
	const char *path;

	if (storage->set->mail_attachment_dir[0] != '\0') {
		*error_r = "mail_attachment_dir is not supported by the rbd "
		           "storage (attachments stay inside the message in "
		           "RADOS): remove the setting";
		return -1;
	}
	if (fts != NULL && fts[0] != '\0' &&
	    !mailbox_list_get_root_path(ns->list, MAILBOX_LIST_PATH_TYPE_INDEX,
	                                &path)) {
		e_warning(storage->event,
		          "rbd: fts = %s has no effect: FTS keeps its index in "
		          "Dovecot's index directory, which INDEX=MEMORY does "
		          "not have (give the location a cache directory)",
		          fts);
	}
	return 0;
}

/* With the acl plugin alone, the ACLs of rbd mailboxes would go to files in
   the node's index cache (vfile's place for them): seen by no other node,
   and lost with the cache. rbd_acl keeps them in RADOS (rbd-acl.c). */
static int rbd_storage_check_plugins(struct mail_user *user,
                                     const char **error_r)
{
	const char *const *plugins =
	        t_strsplit_spaces(user->set->mail_plugins, " ");

	if (!str_array_find(plugins, "acl") ||
	    str_array_find(plugins, "rbd_acl"))
		return 0;
	*error_r = "mail_plugins has acl but not rbd_acl, which keeps the "
	           "ACLs of rbd mailboxes in RADOS: add rbd_acl after acl";
	return -1;
}

static int rbd_storage_create(struct mail_storage *_storage,
                              struct mail_namespace *ns, const char **error_r)
{
	struct rbd_storage *storage = RBD_STORAGE(_storage);
	struct mail_user *user = _storage->user;
	struct rbd_error err;

	event_add_category(_storage->event, &event_category_rbd);
	if (rbd_storage_check_settings(_storage, ns, error_r) < 0 ||
	    rbd_storage_check_plugins(user, error_r) < 0)
		return -1;
	if (rbd_user_config(user, &storage->config, error_r) < 0 ||
	    rbd_storage_max_message_size(storage, error_r) < 0)
		return -1;
	if (rbd_cluster_get(storage->config, &storage->cluster, &err) !=
	    RBD_OK) {
		*error_r = t_strdup(err.message);
		return -1;
	}
	return 0;
}

static void rbd_storage_destroy(struct mail_storage *_storage)
{
	struct rbd_storage *storage = RBD_STORAGE(_storage);

	if (storage->cluster != NULL)
		rbd_cluster_unref(&storage->cluster);
	if (storage->config != NULL)
		rbd_config_free(&storage->config);
	index_storage_destroy(_storage);
}

static void
rbd_storage_get_list_settings(const struct mail_namespace *ns ATTR_UNUSED,
                              struct mailbox_list_settings *set)
{
	/* The mailbox tree lives in RADOS: the layout is always ours. The
	   location's path, if any, is only this node's index cache. Dovecot
	   reads the first field as that path even in "rbd:INDEX=MEMORY". */
	set->layout = RBD_LIST_NAME;
	if (set->root_dir != NULL &&
	    strcmp(set->root_dir, "INDEX=MEMORY") == 0) {
		set->root_dir = "";
		set->index_dir = "";
	}
}

bool rbd_storage_unavailable(struct rbd_storage *storage)
{
	struct timeval now;

	i_gettimeofday(&now);
	if (timeval_cmp(&now, &storage->unavailable_until) >= 0)
		return FALSE;
	mail_storage_set_error(&storage->storage, MAIL_ERROR_UNAVAILABLE,
	                       RBD_UNAVAILABLE_MSG);
	return TRUE;
}

int rbd_storage_open_user(struct rbd_storage *storage, const char *ns,
                          struct rbd_user **user)
{
	struct rbd_error err;

	if (rbd_storage_unavailable(storage))
		return -1;
	if (*user != NULL)
		return 0;
	if (rbd_user_open(storage->cluster, ns, rbd_command_clock(), user,
	                  &err) != RBD_OK) {
		rbd_storage_set_error(&storage->storage, &err);
		return -1;
	}
	return 0;
}

int rbd_mailbox_get_user(struct rbd_mailbox *mbox, struct rbd_user **user_r)
{
	if (rbd_list_get_user(mbox->box.list, user_r) < 0) {
		mail_storage_copy_list_error(mbox->box.storage, mbox->box.list);
		return -1;
	}
	return 0;
}

static void rbd_storage_fail_fast(struct mail_storage *storage)
{
	i_gettimeofday(&RBD_STORAGE(storage)->unavailable_until);
	RBD_STORAGE(storage)->unavailable_until.tv_sec +=
	        RBD_UNAVAILABLE_FAST_FAIL_SECS;
}

void rbd_storage_set_error(struct mail_storage *storage,
                           const struct rbd_error *err)
{
	switch (err->code) {
	case RBD_OK:
		i_unreached();
	case RBD_ERR_NOT_FOUND:
		mail_storage_set_error(storage, MAIL_ERROR_NOTFOUND,
		                       T_MAIL_ERR_MAILBOX_NOT_FOUND(""));
		break;
	case RBD_ERR_EXISTS:
		mail_storage_set_error(storage, MAIL_ERROR_EXISTS,
		                       "Mailbox already exists");
		break;
	case RBD_ERR_UNKNOWN:
		/* The change may still take effect although the client hears
		   NO: the log must say so. The core undoes an append, copy or
		   flag change that does at the next call on the mailbox (gc
		   reclaims the bodies of one that never does). */
		e_error(storage->event,
		        "rbd: %s: the change may still take effect (the next "
		        "command on the mailbox undoes it if it does)",
		        err->message);
		rbd_storage_fail_fast(storage);
		mail_storage_set_error(storage, MAIL_ERROR_UNAVAILABLE,
		                       RBD_UNAVAILABLE_MSG);
		break;
	case RBD_ERR_UNAVAILABLE:
		rbd_storage_fail_fast(storage);
		rbd_events_unavailable(RBD_STORAGE(storage), err->message);
		mail_storage_set_error(storage, MAIL_ERROR_UNAVAILABLE,
		                       RBD_UNAVAILABLE_MSG);
		break;
	case RBD_ERR_CONFLICT:
	case RBD_ERR_BUSY:
		e_warning(storage->event, "rbd: %s", err->message);
		mail_storage_set_error(storage, MAIL_ERROR_UNAVAILABLE,
		                       RBD_UNAVAILABLE_MSG);
		break;
	case RBD_ERR_PERMISSION:
		/* The key's caps: the operator's to fix, nothing the client
		   did. The message names the setting, pool and key. */
		e_error(storage->event, "rbd: %s", err->message);
		mail_storage_set_error(storage, MAIL_ERROR_UNAVAILABLE,
		                       RBD_UNAVAILABLE_MSG);
		break;
	case RBD_ERR_INVALID:
	case RBD_ERR_CORRUPT:
	case RBD_ERR_RESYNC:
	case RBD_ERR_IO:
		mail_storage_set_critical(storage, "rbd: %s (%s)", err->message,
		                          rbd_code_name(err->code));
		break;
	}
}

void rbd_mailbox_set_error(struct rbd_mailbox *mbox,
                           const struct rbd_error *err)
{
	if (err->code == RBD_ERR_NOT_FOUND)
		mailbox_set_deleted(&mbox->box);
	else
		rbd_storage_set_error(mbox->box.storage, err);
}

static struct mailbox *rbd_mailbox_alloc(struct mail_storage *storage,
                                         struct mailbox_list *list,
                                         const char *vname,
                                         enum mailbox_flags flags)
{
	struct rbd_mailbox *mbox;
	pool_t pool;

	pool = pool_alloconly_create("rbd mailbox", 1024 * 2);
	mbox = p_new(pool, struct rbd_mailbox, 1);
	mbox->box = rbd_mailbox;
	mbox->box.pool = pool;
	mbox->box.storage = storage;
	mbox->box.list = list;
	mbox->box.mail_vfuncs = &rbd_mail_vfuncs;
	index_storage_mailbox_alloc(&mbox->box, vname, flags,
	                            MAIL_INDEX_PREFIX);
	mbox->storage = RBD_STORAGE(storage);
	return &mbox->box;
}

static int rbd_lookup(struct rbd_mailbox *mbox, guid_128_t guid_r)
{
	struct rbd_user *user;
	struct rbd_error err;

	if (rbd_list_listed_guid(mbox->box.list, mbox->box.name, guid_r))
		return 1;
	if (rbd_mailbox_get_user(mbox, &user) < 0)
		return -1;
	if (rbd_lookup_mailbox(user, mbox->box.name, guid_r, &err) == RBD_OK)
		return 1;
	if (err.code == RBD_ERR_NOT_FOUND)
		return 0;
	rbd_storage_set_error(mbox->box.storage, &err);
	return -1;
}

static int rbd_mailbox_exists(struct mailbox *box, bool auto_boxes,
                              enum mailbox_existence *existence_r)
{
	guid_128_t guid;
	int ret;

	/* As for index storages: a mailbox created on first open (INBOX)
	   exists for whoever asks with auto_boxes (SETMETADATA, STATUS). */
	if (auto_boxes && mailbox_is_autocreated(box)) {
		*existence_r = MAILBOX_EXISTENCE_SELECT;
		return 0;
	}
	if ((ret = rbd_lookup(RBD_MAILBOX(box), guid)) < 0)
		return -1;
	*existence_r =
	        ret > 0 ? MAILBOX_EXISTENCE_SELECT : MAILBOX_EXISTENCE_NONE;
	return 0;
}

/* A listed mailbox whose index object is gone. doveadm (force-resync, or
   any command opening it with ACLs ignored, i.e. as the administrator)
   recreates this one mailbox from the bodies that are really lost (no
   record of any mailbox references them; see rebuilder.h), and only while
   it is still listed: a delete from another node that won the race stays
   a delete. Elsewhere it stays an error: the rebuild scans every body of
   the user and must not stall an IMAP session. */
static int rbd_mailbox_rebuild_lost(struct rbd_mailbox *mbox,
                                    struct rbd_user *user)
{
	struct rbd_rebuild_stats stats;
	struct rbd_error err;

	if ((mbox->box.flags & MAILBOX_FLAG_IGNORE_ACLS) == 0)
		return 0;
	if (rbd_mailbox_rebuild(user, mbox->guid, &stats, &err) != RBD_OK) {
		rbd_storage_set_error(mbox->box.storage, &err);
		return -1;
	}
	i_info("rbd: index of %s was lost: recreated it with %" PRIu64
	       " messages from their bodies",
	       mbox->box.vname, stats.messages_recovered);
	return 1;
}

/* The name led to mbox->guid in this command. */
static void rbd_mailbox_named(struct rbd_mailbox *mbox)
{
	rbd_command_stamp(&mbox->name_checked);
	rbd_list_looked_up(mbox->box.list, mbox->box.name, mbox->guid);
}

/* Opens the index the mailbox's name leads to. */
static int rbd_mailbox_open_named_index(struct rbd_mailbox *mbox,
                                        struct rbd_user *user)
{
	struct rbd_error err;
	int ret;

	if (!rbd_list_listed_guid(mbox->box.list, mbox->box.name, mbox->guid)) {
		/* Usually one read, of the state alone (doc/design.md,
		   "Names in the state"). */
		if (rbd_index_open_name(user, mbox->box.name, mbox->guid,
		                        &mbox->index, &err) == RBD_OK) {
			rbd_mailbox_named(mbox);
			return 0;
		}
		if (err.code != RBD_ERR_NOT_FOUND) {
			rbd_storage_set_error(mbox->box.storage, &err);
			return -1;
		}
		/* The name, or its listed index (rebuilt below), is gone. */
		if ((ret = rbd_lookup(mbox, mbox->guid)) <= 0) {
			if (ret == 0) {
				mail_storage_set_error(
				        mbox->box.storage, MAIL_ERROR_NOTFOUND,
				        T_MAIL_ERR_MAILBOX_NOT_FOUND(
				                mbox->box.vname));
			}
			return -1;
		}
	}
	rbd_mailbox_named(mbox);
	if (rbd_index_open(user, mbox->guid, &mbox->index, &err) == RBD_OK)
		return 0;
	if (err.code == RBD_ERR_NOT_FOUND &&
	    (ret = rbd_mailbox_rebuild_lost(mbox, user)) != 0) {
		if (ret < 0)
			return -1;
		if (rbd_index_open(user, mbox->guid, &mbox->index, &err) ==
		    RBD_OK)
			return 0;
	}
	rbd_storage_set_error(mbox->box.storage, &err);
	return -1;
}

int rbd_mailbox_open_index(struct rbd_mailbox *mbox)
{
	struct rbd_user *user;

	if (rbd_storage_unavailable(mbox->storage))
		return -1;
	if (mbox->index != NULL)
		return 0;
	if (rbd_mailbox_get_user(mbox, &user) < 0)
		return -1;
	/* Opening reads the state (rbd_mailbox_read_state uses that). */
	rbd_command_stamp(&mbox->state_read);
	if (rbd_mailbox_open_named_index(mbox, user) < 0)
		return -1;
	/* Writes check the name themselves, within their guarded op: a
	   rename or delete that took it away fails them NOTFOUND. */
	rbd_index_guard_name(mbox->index, mbox->box.name);
	return 0;
}

int rbd_mailbox_check_name(struct rbd_mailbox *mbox)
{
	guid_128_t guid;
	int ret;

	/* A rename racing with the command is as if it came just after it:
	   one lookup per command (rbd_command_stamped) is as good as more,
	   its closing sync included. */
	if (rbd_command_stamped(&mbox->name_checked))
		return 0;
	/* The state this command read names the mailbox so: the name led to
	   it then, no read of the list needed. */
	if (mbox->index != NULL &&
	    rbd_index_named(mbox->index, mbox->box.name) != 0) {
		rbd_command_stamp(&mbox->name_checked);
		return 0;
	}
	if ((ret = rbd_lookup(mbox, guid)) < 0)
		return -1;
	if (ret == 0 || !guid_128_equals(guid, mbox->guid)) {
		e_debug(mbox->box.event,
		        "rbd: the name now leads to %s: mailbox closed",
		        ret == 0 ? "no mailbox" : "another mailbox");
		mailbox_set_deleted(&mbox->box);
		return -1;
	}
	rbd_command_stamp(&mbox->name_checked);
	return 0;
}

/* Whether this node's cache (`view`) may be synced from where it is: 1 if
   so, 0 if it is stale. The state rbd_index_open read predates the cache
   read, so a cache found ahead of it may merely have been synced since by
   another process of this node: only a fresh read of the state says it
   is stale. */
static int rbd_mailbox_cache_usable(struct rbd_mailbox *mbox,
                                    struct mail_index_view *view)
{
	struct rbd_index_status status;
	struct rbd_error err;

	rbd_index_last_status(mbox->index, &status);
	if (rbd_sync_cache_state(mbox, view, &status) != RBD_CACHE_STALE)
		return 1;
	if (rbd_index_get_status(mbox->index, &status, &err) != RBD_OK) {
		rbd_mailbox_set_error(mbox, &err);
		return -1;
	}
	return rbd_sync_cache_state(mbox, view, &status) != RBD_CACHE_STALE;
}

/* Drops this process's handle on the cache, so that the next open reads
   (or creates) the files on disk afresh. */
static void rbd_mailbox_drop_cache(struct mailbox *box)
{
	mail_index_close(box->index);
	mail_index_alloc_cache_unref(&box->index);
	mail_index_alloc_cache_destroy_unrefed();
}

/* Opens this node's cache of the mailbox as it is on disk: 1 with a view,
   0 if there are no files (a new or in-memory cache: Dovecot's own open
   decides what to do), -1 on error. */
static int rbd_mailbox_open_cache(struct rbd_mailbox *mbox,
                                  struct mail_index_view **view_r)
{
	struct mailbox *box = &mbox->box;
	struct index_mailbox_context *ibox = INDEX_STORAGE_CONTEXT(box);
	unsigned int attempt;

	for (attempt = 0;; attempt++) {
		if (index_storage_mailbox_alloc_index(box) < 0)
			return -1;
		(void)mailbox_get_permissions(box);
		if (mail_index_open(box->index, ibox->index_flags) <= 0)
			return 0;
		/* A handle this process kept open may be of files another
		   process of this node has replaced since (a reset gives
		   them a new index id): it cannot be refreshed, only
		   reopened. */
		if (mail_index_refresh(box->index) == 0 || attempt > 0)
			break;
		rbd_mailbox_drop_cache(box);
	}
	rbd_sync_register_ext(mbox);
	*view_r = mail_index_view_open(box->index);
	return 1;
}

/* Replaces a stale cache with new files, as Dovecot replaces the index of
   a deleted mailbox: marked deleted first, so that a session of this node
   still using it ends (it shows another mailbox, and could write it back),
   then unlinked, and this process's handle dropped, so that the open that
   follows creates new files. A reset in place would not do: Dovecot
   starts even a reset index at its old HIGHESTMODSEQ, and the mailbox now
   under the name usually has a lower one. */
static int rbd_mailbox_retire_cache(struct rbd_mailbox *mbox,
                                    struct mail_index_view **view)
{
	struct mailbox *box = &mbox->box;
	struct mail_index_transaction *trans;
	int ret;

	if (!mail_index_is_deleted(box->index)) {
		/* Dovecot logs a failure; the sessions it would have told
		   find out by themselves (rbd_mailbox_sync_init). */
		trans = mail_index_transaction_begin(*view, 0);
		mail_index_set_deleted(trans);
		(void)mail_index_transaction_commit(&trans);
	}
	if ((ret = mail_index_unlink(box->index)) < 0)
		mail_storage_set_index_error(box->storage, box->index);
	mail_index_view_close(view);
	rbd_mailbox_drop_cache(box);
	return ret;
}

/* Checks this node's cache of the mailbox against the cluster (mailbox
   GUID, UIDVALIDITY, HIGHESTMODSEQ) before Dovecot opens it, so that a
   stale one is replaced while nothing of this mailbox uses it yet. The
   cache is kept by mailbox GUID, so it is stale only after a change of
   UIDVALIDITY under the same GUID (dsync), if it ran ahead of the
   cluster, or if it is marked deleted.
   A cache is replaced only under the mailbox list's lock, checked again
   there: Dovecot holds that lock through a DELETE, from marking the cache
   deleted until the cluster has dropped the mailbox (or the mark is taken
   back), and replacing the files under it would fail the DELETE's writes
   and panic this process's own. Under the lock a mark is either of a
   finished DELETE (the cluster then reports the mailbox gone) or of one
   that died halfway (the cache is rebuilt).
   Returns 1 if the cache is kept and left open (so that Dovecot's open
   does not read it again: the caller closes it after that), 0 if there is
   none now, -1 on error. */
static int rbd_mailbox_check_cache(struct rbd_mailbox *mbox)
{
	struct mailbox *box = &mbox->box;
	struct mail_index_view *view;
	bool locked = FALSE;
	int ret;

	for (;;) {
		if ((ret = rbd_mailbox_open_cache(mbox, &view)) <= 0)
			break;
		if ((ret = rbd_mailbox_cache_usable(mbox, view)) != 0) {
			mail_index_view_close(&view);
			if (ret < 0)
				mail_index_close(box->index);
			break;
		}
		if (locked) {
			e_debug(box->event,
			        "rbd: index cache is of another state of "
			        "the mailbox than the cluster's: rebuilding "
			        "it");
			ret = rbd_mailbox_retire_cache(mbox, &view);
			break;
		}
		mail_index_view_close(&view);
		rbd_mailbox_drop_cache(box);
		if (mailbox_list_lock(box->list) < 0) {
			mail_storage_copy_list_error(box->storage, box->list);
			return -1;
		}
		locked = TRUE;
	}
	if (locked)
		mailbox_list_unlock(box->list);
	return ret;
}

static int rbd_mailbox_open(struct mailbox *box)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);
	const char *path;
	int kept, ret;

	if (rbd_mailbox_open_index(mbox) < 0)
		return -1;
	if (mbox->open_for_status)
		return 0;
	/* The cache of the mailbox the name led to now (rbd_list_get_path
	   would look the name up again, and could find another). */
	path = rbd_list_cache_path(box->list, mbox->guid);
	box->_index_path = path == NULL ? "" : p_strdup(box->pool, path);
	if ((kept = rbd_mailbox_check_cache(mbox)) < 0)
		return -1;
	ret = index_storage_mailbox_open(box, FALSE);
	/* Dovecot's open took a reference of its own. */
	if (kept > 0)
		mail_index_close(box->index);
	if (ret < 0)
		return -1;
	/* Every record carries its RADOS MODSEQ from the first sync on, not
	   only once a client enables CONDSTORE. */
	mail_index_modseq_enable(box->index);
	rbd_sync_register_ext(mbox);
	mbox->msg_pool = pool_alloconly_create("rbd messages", 4096);
	p_array_init(&mbox->msgs, mbox->msg_pool, 64);
	mbox->msgs_stale = TRUE;
	return 0;
}

static void rbd_mailbox_close(struct mailbox *box)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);

	rbd_notify_deinit(mbox);
	rbd_mailbox_prefetch_free(mbox);
	/* An APPEND to a mailbox not selected is not followed by a sync.
	   New keywords are what a cache learns slowly (Dovecot's index
	   rewrites its keyword header for each new name, so learning K at
	   once costs K^2): learnt now, one save at a time as mdbox does,
	   not all at the next SELECT. A failure here only defers them. */
	if (mbox->sync_at_close && mbox->index != NULL)
		(void)rbd_sync(mbox, FALSE);
	if (mbox->index != NULL)
		rbd_index_close(&mbox->index);
	/* What the mailbox's last calls did is logged now (a STATUS may be
	   the session's last command), not at the session's next call. */
	rbd_list_flush_events(box->list);
	pool_unref(&mbox->msg_pool);
	index_storage_mailbox_close(box);
}

static int rbd_mailbox_create(struct mailbox *box,
                              const struct mailbox_update *update,
                              bool directory)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);
	struct rbd_user *user;
	struct rbd_error err;
	guid_128_t guid;
	uint32_t uidvalidity = 0;
	int ret;

	/* \Noselect mailboxes do not exist in RADOS: a directory create is a
	   mailbox create (the list has MAILBOX_LIST_PROP_NO_NOSELECT), unless
	   the name already holds children, all a directory is for. dsync
	   creates the other side's directories so, and must not turn them
	   into mailboxes. */
	if (directory &&
	    (ret = mailbox_has_children(box->list, box->vname)) != 0) {
		if (ret < 0)
			mail_storage_copy_list_error(box->storage, box->list);
		else
			mail_storage_set_error(box->storage, MAIL_ERROR_EXISTS,
			                       "Mailbox already exists");
		return -1;
	}
	if (update != NULL && !guid_128_is_empty(update->mailbox_guid))
		guid_128_copy(guid, update->mailbox_guid);
	else
		guid_128_generate(guid);
	if (update != NULL)
		uidvalidity = update->uid_validity;
	if (rbd_mailbox_get_user(mbox, &user) < 0)
		return -1;
	if (rbd_create_mailbox(user, box->name, guid, uidvalidity, "", &err) !=
	    RBD_OK) {
		rbd_storage_set_error(box->storage, &err);
		return -1;
	}
	return 0;
}

/* RADOS refuses to change the GUID or UIDVALIDITY of a mailbox that has
   messages: not possible, rather than a failure of the cluster. */
static void rbd_mailbox_update_failed(struct rbd_mailbox *mbox,
                                      const struct rbd_error *err)
{
	if (err->code == RBD_ERR_INVALID) {
		mail_storage_set_error(mbox->box.storage,
		                       MAIL_ERROR_NOTPOSSIBLE, err->message);
	} else {
		rbd_storage_set_error(mbox->box.storage, err);
	}
}

/* dsync gives a mailbox that both sides created (typically INBOX) the
   other side's GUID. In RADOS the GUID names the index object, so the
   mailbox moves to a new one. */
static int rbd_mailbox_change_guid(struct rbd_mailbox *mbox,
                                   const guid_128_t guid)
{
	struct rbd_user *user;
	struct rbd_error err;

	if (rbd_mailbox_get_user(mbox, &user) < 0)
		return -1;
	if (rbd_change_mailbox_guid(user, mbox->box.name, guid, &err) !=
	    RBD_OK) {
		rbd_mailbox_update_failed(mbox, &err);
		return -1;
	}
	/* The watch is on the old index object. */
	rbd_notify_deinit(mbox);
	rbd_index_close(&mbox->index);
	if (rbd_mailbox_open_index(mbox) < 0)
		return -1;
	rbd_notify_changes(&mbox->box);
	return 0;
}

/* dsync carries the source's first recent UID: the messages below it were
   \Recent in some session there, so no session here may claim them. They
   are claimed for nobody; the local header follows at the next sync. */
static int rbd_mailbox_update_first_recent(struct rbd_mailbox *mbox,
                                           uint32_t min_first_recent_uid)
{
	struct rbd_error err;
	uint32_t first, end;

	if (rbd_index_claim_recent(mbox->index, min_first_recent_uid, &first,
	                           &end, &err) != RBD_OK) {
		rbd_mailbox_update_failed(mbox, &err);
		return -1;
	}
	return 0;
}

/* dsync makes the mailbox the copy of its source: GUID, UIDVALIDITY, and
   at least the source's UIDNEXT and HIGHESTMODSEQ (what clients of the
   source may have cached must stay valid) and first recent UID. */
static int rbd_mailbox_update(struct mailbox *box,
                              const struct mailbox_update *update)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);
	struct rbd_error err;
	bool changed = FALSE;

	if (!box->opened) {
		if (mailbox_open(box) < 0)
			return -1;
	}
	if (!guid_128_is_empty(update->mailbox_guid) &&
	    !guid_128_equals(update->mailbox_guid, mbox->guid)) {
		if (rbd_mailbox_change_guid(mbox, update->mailbox_guid) < 0)
			return -1;
		changed = TRUE;
	}
	if (update->uid_validity != 0 || update->min_next_uid != 0 ||
	    update->min_highest_modseq != 0) {
		if (rbd_index_update_state(mbox->index, update->uid_validity,
		                           update->min_next_uid,
		                           update->min_highest_modseq,
		                           &err) != RBD_OK) {
			rbd_mailbox_update_failed(mbox, &err);
			return -1;
		}
		changed = TRUE;
	}
	if (update->min_first_recent_uid != 0) {
		if (rbd_mailbox_update_first_recent(
		            mbox, update->min_first_recent_uid) < 0)
			return -1;
		changed = TRUE;
	}
	/* The local index learns of it as of any change in RADOS. */
	if (changed && rbd_sync(mbox, FALSE) < 0)
		return -1;
	/* What else Dovecot may update (cache fields) is local. */
	return index_storage_mailbox_update_common(box, update);
}

/* The ACL of a deleted mailbox (rbd-acl.c) is never read again, its GUID
   being gone: removed so that it does not stay in the dictionary for good.
   A failure leaves only that, hence no more than a warning. */
static void rbd_mailbox_delete_acl(struct rbd_mailbox *mbox)
{
	struct mailbox_list *list = mbox->box.list;
	struct rbd_dict_entries *entries;
	struct rbd_dict_change *changes;
	struct rbd_dict_store *dict;
	struct rbd_error err;
	const char *prefix;
	int missed;
	size_t i;

	if (rbd_list_get_dict(list, &dict) < 0)
		return;
	prefix = t_strconcat(RBD_ACL_KEY_PREFIX, guid_128_to_string(mbox->guid),
	                     "/", NULL);
	if (rbd_dict_store_list(dict, prefix, "", SIZE_MAX, &entries, &err) !=
	    RBD_OK) {
		e_warning(mbox->box.event,
		          "rbd: ACL of the deleted mailbox: %s", err.message);
		return;
	}
	changes = t_new(struct rbd_dict_change, I_MAX(entries->count, 1));
	for (i = 0; i < entries->count; i++) {
		changes[i].op = RBD_DICT_UNSET;
		changes[i].key = t_strdup(entries->entries[i].key);
	}
	if (entries->count > 0 &&
	    rbd_dict_store_commit(dict, changes, entries->count, &missed,
	                          &err) != RBD_OK) {
		e_warning(mbox->box.event,
		          "rbd: ACL of the deleted mailbox: %s", err.message);
	}
	rbd_dict_entries_free(&entries);
}

static int rbd_mailbox_delete(struct mailbox *box)
{
	/* RADOS drops the records' body references itself, so messages need
	   not be expunged one by one first. This node's cache stays, marked
	   deleted by Dovecot: other processes of this node that have it open
	   see the mark and close it, where removing it under them would fail
	   their writes. No one opens it again, its GUID being gone, and the
	   first LIST an hour on removes it (rbd_list_sweep_cache). */
	box->delete_skip_empty_check = TRUE;
	if (index_storage_mailbox_delete(box) < 0)
		return -1;
	rbd_mailbox_delete_acl(RBD_MAILBOX(box));
	return 0;
}

/* RFC 3501: renaming INBOX moves all its messages into a new mailbox of
   that name and leaves INBOX empty. The copy shares every body. */
static int rbd_mailbox_rename_inbox(struct mailbox *src, struct mailbox *dest)
{
	struct mailbox_transaction_context *src_t, *dest_t;
	struct mail_search_context *search;
	struct mail_search_args *args;
	struct mail_save_context *save;
	struct mail *mail;
	int ret = 0;

	if (mailbox_create(dest, NULL, FALSE) < 0) {
		mail_storage_copy_error(src->storage, dest->storage);
		return -1;
	}
	if (mailbox_sync(src, 0) < 0 || mailbox_open(dest) < 0)
		return -1;
	src_t = mailbox_transaction_begin(src, 0, __func__);
	dest_t = mailbox_transaction_begin(dest, 0, __func__);
	args = mail_search_build_init();
	mail_search_build_add_all(args);
	search = mailbox_search_init(src_t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (ret == 0 && mailbox_search_next(search, &mail)) {
		save = mailbox_save_alloc(dest_t);
		mailbox_save_copy_flags(save, mail);
		if (mailbox_move(&save, mail) < 0)
			ret = -1;
	}
	if (mailbox_search_deinit(&search) < 0)
		ret = -1;
	if (ret < 0) {
		mailbox_transaction_rollback(&dest_t);
		mailbox_transaction_rollback(&src_t);
		return -1;
	}
	if (mailbox_transaction_commit(&dest_t) < 0) {
		mail_storage_copy_error(src->storage, dest->storage);
		mailbox_transaction_rollback(&src_t);
		return -1;
	}
	return mailbox_transaction_commit(&src_t);
}

static int rbd_mailbox_rename(struct mailbox *src, struct mailbox *dest)
{
	if (src->inbox_user)
		return rbd_mailbox_rename_inbox(src, dest);
	if (src->list->v.rename_mailbox(src->list, src->name, dest->list,
	                                dest->name) < 0) {
		mail_storage_copy_list_error(src->storage, src->list);
		return -1;
	}
	return 0;
}

/* What the index state in RADOS holds, the same on every node (UNSEEN
   and RECENT while the state counts them). */
#define RBD_STATE_STATUS_ITEMS                                                 \
	(STATUS_MESSAGES | STATUS_RECENT | STATUS_UIDNEXT |                    \
	 STATUS_UIDVALIDITY | STATUS_UNSEEN | STATUS_HIGHESTMODSEQ)
#define RBD_STATE_SIZE_ITEMS                                                   \
	(MAILBOX_METADATA_VIRTUAL_SIZE | MAILBOX_METADATA_PHYSICAL_SIZE)

/* Reads the index state of a mailbox not open in this session, for a
   STATUS or a size that the state answers: as imapc asks its server
   instead of syncing, this node's cache is neither opened nor synced, so
   the cost (the name lookup and one read of the state, which opening the
   RADOS index does anyway) does not grow with the mailbox, nor with how
   far behind (or absent) the cache is. mailbox_open() still runs, so
   plugins' open checks (acl) hold; the mailbox is left unopened. Returns 1
   with *status_r, 0 if the open went further (autocreated: the caller goes
   the usual way), -1 on error. */
static int rbd_mailbox_read_state(struct rbd_mailbox *mbox,
                                  struct rbd_index_status *status_r)
{
	struct rbd_error err;
	int ret;

	mbox->open_for_status = TRUE;
	ret = mailbox_open(&mbox->box);
	mbox->open_for_status = FALSE;
	if (ret < 0)
		return -1;
	if (mbox->box.opened)
		return 0;
	/* A handle opened in an earlier command holds an older read. */
	if (rbd_command_stamped(&mbox->state_read))
		rbd_index_last_status(mbox->index, status_r);
	else if (rbd_index_get_status(mbox->index, status_r, &err) != RBD_OK) {
		rbd_mailbox_set_error(mbox, &err);
		return -1;
	} else
		rbd_command_stamp(&mbox->state_read);
	return 1;
}

/* A STATUS of a mailbox not open here that asks only for what the index
   state holds: 1 if answered, 0 if the caller goes the usual way (the
   state does not count what is asked for, or the box was opened), -1 on
   error. */
static int rbd_mailbox_get_state_status(struct rbd_mailbox *mbox,
                                        enum mailbox_status_items items,
                                        struct mailbox_status *status_r)
{
	struct rbd_index_status status;
	int ret;

	if ((ret = rbd_mailbox_read_state(mbox, &status)) <= 0)
		return ret;
	if (((items & STATUS_UNSEEN) != 0 && status.seen_counted == 0) ||
	    ((items & STATUS_RECENT) != 0 && status.recent_counted == 0))
		return 0;
	status_r->messages = status.messages;
	/* Those nobody has claimed, as the node's header counts them (the
	   sync writes the cluster's first recent UID there): STATUS claims
	   nothing. */
	status_r->recent = status.recent_messages;
	status_r->unseen = status.messages > status.seen_messages
	                           ? status.messages - status.seen_messages
	                           : 0;
	status_r->uidvalidity = status.uidvalidity;
	status_r->uidnext = status.uidnext;
	/* As Dovecot's index answers for a mailbox that had no change. */
	status_r->highest_modseq = I_MAX(status.highest_modseq, 1);
	return 1;
}

static int rbd_mailbox_get_status(struct mailbox *box,
                                  enum mailbox_status_items items,
                                  struct mailbox_status *status_r)
{
	int ret = 0;

	if (!box->opened && items != 0 &&
	    (items & ENUM_NEGATE(RBD_STATE_STATUS_ITEMS)) == 0)
		ret = rbd_mailbox_get_state_status(RBD_MAILBOX(box), items,
		                                   status_r);
	if (ret < 0)
		return -1;
	if (ret == 0 && index_storage_get_status(box, items, status_r) < 0)
		return -1;
	/* MODSEQs come from RADOS: they are permanent and the same on every
	   node, so CONDSTORE/QRESYNC work across the cluster. */
	status_r->nonpermanent_modseqs = FALSE;
	return 0;
}

/* A box that was never opened is never closed either (STATUS from the
   index state, METADATA's GUID): its RADOS handle goes here. */
static void rbd_mailbox_free(struct mailbox *box)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);

	if (mbox->index != NULL)
		rbd_index_close(&mbox->index);
	index_storage_mailbox_free(box);
}

static int rbd_mailbox_get_metadata(struct mailbox *box,
                                    enum mailbox_metadata_items items,
                                    struct mailbox_metadata *metadata_r)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);
	struct rbd_index_status status;
	int ret;

	if ((items & MAILBOX_METADATA_GUID) != 0) {
		/* A mailbox Dovecot would create on open (INBOX of a new
		   user) is created here too, as index storages do: METADATA
		   on INBOX may be a new user's first command. */
		if (!box->opened && mailbox_is_autocreated(box) &&
		    mailbox_open(box) < 0)
			return -1;
		/* An open index knows its GUID: no call, so that imap can
		   export a selected mailbox's state for imap-hibernate while
		   the cluster is away (rbd_mailbox_open_index fails fast
		   then; the fault soak, seed 1503). */
		if (mbox->index == NULL && rbd_mailbox_open_index(mbox) < 0)
			return -1;
		guid_128_copy(metadata_r->guid, mbox->guid);
		items &= ENUM_NEGATE(MAILBOX_METADATA_GUID);
	}
	/* The state sums the sizes as Dovecot's index would (STATUS SIZE,
	   quota count): see rbd_mailbox_read_state. */
	if ((items & RBD_STATE_SIZE_ITEMS) != 0 && !box->opened) {
		if ((ret = rbd_mailbox_read_state(mbox, &status)) < 0)
			return -1;
		if (ret > 0) {
			metadata_r->virtual_size = status.virtual_size;
			metadata_r->physical_size = status.physical_size;
			items &= ENUM_NEGATE(RBD_STATE_SIZE_ITEMS);
		}
	}
	return index_mailbox_get_metadata(box, items, metadata_r);
}

static struct mailbox_transaction_context *
rbd_transaction_begin(struct mailbox *box, enum mailbox_transaction_flags flags,
                      const char *reason)
{
	struct mailbox_transaction_context *t;
	struct rbd_transaction_context *rt;
	pool_t pool;

	t = index_transaction_begin(box, flags, reason);
	pool = pool_alloconly_create("rbd transaction", 1024);
	rt = p_new(pool, struct rbd_transaction_context, 1);
	rt->pool = pool;
	p_array_init(&rt->changes, pool, 4);
	p_array_init(&rt->expunges, pool, 8);
	MODULE_CONTEXT_SET(t, rbd_transaction_module, rt);
	return t;
}

static void rbd_transaction_free(struct mailbox_transaction_context *t)
{
	struct rbd_transaction_context *rt = RBD_TRANSACTION(t);

	pool_unref(&rt->pool);
}

static int
rbd_transaction_commit(struct mailbox_transaction_context *t,
                       struct mail_transaction_commit_changes *changes_r)
{
	struct mail_index_sync_ctx *own_sync = NULL;
	int ret;

	/* Flag changes and expunges go to RADOS first; the local index only
	   learns of them (with their RADOS MODSEQs) from the next sync, or
	   from this transaction under the index lock (a STORE .SILENT). */
	ret = rbd_transaction_push(t, &own_sync);
	rbd_transaction_free(t);
	if (ret < 0) {
		if (own_sync != NULL)
			mail_index_sync_rollback(&own_sync);
		index_transaction_rollback(t);
		return -1;
	}
	ret = index_transaction_commit(t, changes_r);
	/* The cluster has the change whatever happens here: a local failure
	   is Dovecot's to log, not the STORE's to answer. */
	if (own_sync != NULL)
		(void)mail_index_sync_commit(&own_sync);
	return ret;
}

static void rbd_transaction_rollback(struct mailbox_transaction_context *t)
{
	rbd_transaction_free(t);
	index_transaction_rollback(t);
}

struct mail_storage rbd_storage = {
        .name = RBD_STORAGE_NAME,
        .class_flags = MAIL_STORAGE_CLASS_FLAG_NO_ROOT |
                       MAIL_STORAGE_CLASS_FLAG_HAVE_MAIL_GUIDS |
                       MAIL_STORAGE_CLASS_FLAG_HAVE_MAIL_SAVE_GUIDS |
                       MAIL_STORAGE_CLASS_FLAG_BINARY_DATA,
        .v =
                {
                        .alloc = rbd_storage_alloc,
                        .create = rbd_storage_create,
                        .destroy = rbd_storage_destroy,
                        .get_list_settings = rbd_storage_get_list_settings,
                        .mailbox_alloc = rbd_mailbox_alloc,
                },
};

struct mailbox rbd_mailbox = {
        .v =
                {
                        .is_readonly = index_storage_is_readonly,
                        .enable = index_storage_mailbox_enable,
                        .exists = rbd_mailbox_exists,
                        .open = rbd_mailbox_open,
                        .close = rbd_mailbox_close,
                        .free = rbd_mailbox_free,
                        .create_box = rbd_mailbox_create,
                        .update_box = rbd_mailbox_update,
                        .delete_box = rbd_mailbox_delete,
                        .rename_box = rbd_mailbox_rename,
                        .get_status = rbd_mailbox_get_status,
                        .get_metadata = rbd_mailbox_get_metadata,
                        .set_subscribed = index_storage_set_subscribed,
                        .attribute_set = index_storage_attribute_set,
                        .attribute_get = index_storage_attribute_get,
                        .attribute_iter_init =
                                index_storage_attribute_iter_init,
                        .attribute_iter_next =
                                index_storage_attribute_iter_next,
                        .attribute_iter_deinit =
                                index_storage_attribute_iter_deinit,
                        .sync_init = rbd_mailbox_sync_init,
                        .sync_next = index_mailbox_sync_next,
                        .sync_deinit = index_mailbox_sync_deinit,
                        .notify_changes = rbd_notify_changes,
                        .transaction_begin = rbd_transaction_begin,
                        .transaction_commit = rbd_transaction_commit,
                        .transaction_rollback = rbd_transaction_rollback,
                        .mail_alloc = rbd_mail_alloc,
                        .search_init = index_storage_search_init,
                        .search_deinit = index_storage_search_deinit,
                        .search_next_nonblock =
                                index_storage_search_next_nonblock,
                        .search_next_update_seq =
                                index_storage_search_next_update_seq,
                        .search_next_match_mail =
                                index_storage_search_next_match_mail,
                        .save_alloc = rbd_save_alloc,
                        .save_begin = rbd_save_begin,
                        .save_continue = rbd_save_continue,
                        .save_finish = rbd_save_finish,
                        .save_cancel = rbd_save_cancel,
                        .copy = rbd_copy,
                        .transaction_save_commit_pre =
                                rbd_transaction_save_commit_pre,
                        .transaction_save_commit_post =
                                rbd_transaction_save_commit_post,
                        .transaction_save_rollback =
                                rbd_transaction_save_rollback,
                        .is_inconsistent = index_storage_is_inconsistent,
                },
};
