/* The mailbox list class "rbd": the mailbox tree and the subscriptions are
   the user root object `r` in RADOS, read in one op. The only files are
   the optional per-node index cache under mail_location's path. */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "hex-binary.h"
#include "imap-match.h"
#include "ioloop.h"
#include "mail-namespace.h"
#include "mailbox-tree.h"
#include "mailbox-list-subscriptions.h"
#include "sha2.h"
#include "str.h"
#include "unlink-directory.h"
#include "rbd-mail-storage.h"

#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>

#define RBD_LIST_TEMP_PREFIX ".temp."
/* Below NAME_MAX with room to spare. */
#define RBD_LIST_USER_DIR_MAX_LEN 200

/* A cache directory older than this whose GUID the user's listing does
   not name is of a mailbox deleted (or moved to a new GUID by dsync) on
   another node. Old enough that no process of this node is creating it
   for a mailbox created after the listing was read. */
#define RBD_LIST_CACHE_SWEEP_AGE_SECS (60 * 60)

struct rbd_list {
	struct mailbox_list list;
	/* The RADOS namespace of the namespace's owner (rbd_list_namespace),
	   opened on first use, and its dictionary (rbd_list_get_dict). */
	struct rbd_user *user;
	struct rbd_dict_store *dict;
	/* What the ops through `user` cost (rbd-events.c). */
	struct rbd_op_totals op_totals;
	/* This session removed the caches of mailboxes gone elsewhere. */
	bool cache_swept;
	/* The last name a mailbox open looked up, its GUID, and when (a
	   command stamp, rbd_command_stamp): Dovecot asks for the mailbox's
	   path again in the same command (its permissions), and one lookup
	   per command is as good as two (rbd_mailbox_check_name). */
	char *looked_up_name;
	guid_128_t looked_up_guid;
	struct timeval looked_up_at;
	/* An iteration still running, the first of any nested ones:
	   rbd_list_listed_guid. */
	struct rbd_list_iterate_context *listing;
};

struct rbd_list_iterate_context {
	struct mailbox_list_iterate_context ctx;
	ARRAY(struct mailbox_info) infos;
	unsigned int next;
	/* Storage name -> GUID (guid_128_t, in the pool) of every mailbox
	   the iteration's read listed. */
	HASH_TABLE(const char *, uint8_t *) guids;
};

static struct mailbox_list *rbd_list_alloc(void)
{
	struct rbd_list *list;
	pool_t pool;

	pool = pool_alloconly_create("rbd list", 1024);
	list = p_new(pool, struct rbd_list, 1);
	list->list = rbd_mailbox_list;
	list->list.pool = pool;
	return &list->list;
}

static void rbd_list_deinit(struct mailbox_list *list)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);

	if (rlist->dict != NULL)
		rbd_dict_store_close(&rlist->dict);
	if (rlist->user != NULL) {
		rbd_user_settle(rlist->user);
		rbd_unsettled_keep(list, rlist->user);
		rbd_events_flush(list->ns->user->event, rlist->user,
		                 &rlist->op_totals, NULL);
		rbd_events_session_finished(list->ns->user->event,
		                            &rlist->op_totals);
		rbd_user_close(&rlist->user);
	}
	i_free(rlist->looked_up_name);
	pool_unref(&list->pool);
}

static char rbd_list_get_hierarchy_sep(struct mailbox_list *list ATTR_UNUSED)
{
	return RBD_HIERARCHY_SEP;
}

/* The user whose mailboxes the namespace holds: in a shared namespace
   (shared/<owner>/...) its owner, not the session's user. */
static struct mail_user *rbd_list_owner(struct mailbox_list *list)
{
	return list->ns->owner != NULL ? list->ns->owner : list->ns->user;
}

const char *rbd_list_namespace(struct mailbox_list *list)
{
	return rbd_user_namespace(rbd_list_owner(list));
}

int rbd_list_get_user(struct mailbox_list *list, struct rbd_user **user_r)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);
	struct mail_storage *storage =
	        mail_namespace_get_default_storage(list->ns);
	bool was_open = rlist->user != NULL;
	enum mail_error error;
	const char *errstr;

	if (rbd_storage_open_user(RBD_STORAGE(storage),
	                          rbd_list_namespace(list), &rlist->user) < 0) {
		errstr = mail_storage_get_last_error(storage, &error);
		mailbox_list_set_error(list, error, errstr);
		return -1;
	}
	if (!was_open)
		rbd_unsettled_adopt(list, rlist->user);
	rbd_events_flush(storage->event, rlist->user, &rlist->op_totals,
	                 RBD_STORAGE(storage));
	*user_r = rlist->user;
	return 0;
}

void rbd_list_flush_events(struct mailbox_list *list)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);
	struct mail_storage *storage =
	        mail_namespace_get_default_storage(list->ns);

	if (rlist->user != NULL) {
		rbd_events_flush(storage->event, rlist->user, &rlist->op_totals,
		                 RBD_STORAGE(storage));
	}
}

static void rbd_list_set_error(struct mailbox_list *list, const char *name,
                               const struct rbd_error *err)
{
	switch (err->code) {
	case RBD_ERR_NOT_FOUND:
		mailbox_list_set_error(list, MAIL_ERROR_NOTFOUND,
		                       T_MAIL_ERR_MAILBOX_NOT_FOUND(name));
		break;
	case RBD_ERR_EXISTS:
		mailbox_list_set_error(list, MAIL_ERROR_EXISTS,
		                       "Mailbox already exists");
		break;
	case RBD_ERR_UNAVAILABLE:
	case RBD_ERR_CONFLICT:
	case RBD_ERR_BUSY:
		e_warning(list->ns->user->event, "rbd: %s", err->message);
		mailbox_list_set_error(list, MAIL_ERROR_UNAVAILABLE,
		                       RBD_UNAVAILABLE_MSG);
		break;
	case RBD_ERR_INVALID:
		mailbox_list_set_error(list, MAIL_ERROR_PARAMS, err->message);
		break;
	default:
		mailbox_list_set_critical(list, "rbd: %s (%s)", err->message,
		                          rbd_code_name(err->code));
		break;
	}
}

int rbd_list_get_dict(struct mailbox_list *list, struct rbd_dict_store **dict_r)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);
	struct mail_storage *storage =
	        mail_namespace_get_default_storage(list->ns);
	struct rbd_error err;

	if (rbd_storage_unavailable(RBD_STORAGE(storage))) {
		mailbox_list_set_error(list, MAIL_ERROR_UNAVAILABLE,
		                       RBD_UNAVAILABLE_MSG);
		return -1;
	}
	if (rlist->dict == NULL &&
	    rbd_dict_store_open(RBD_STORAGE(storage)->cluster,
	                        rbd_list_namespace(list), rbd_command_clock(),
	                        &rlist->dict,
	                        &err) != RBD_OK) {
		rbd_list_set_error(list, "", &err);
		return -1;
	}
	*dict_r = rlist->dict;
	return 0;
}

/* The user's directory under the cache root: the owner's username, with
   every byte outside [A-Za-z0-9_@-] written as "=XX". So no two users
   share a directory, whatever their names (".", "a/", ".."): the escaping
   is injective and never yields a path separator or a dot entry. A name
   too long for one path component is replaced by "=H" and its SHA-256,
   which escaping never produces. */
static const char *rbd_list_user_dir(struct mailbox_list *list)
{
	const struct mail_user *user = rbd_list_owner(list);
	unsigned char digest[SHA256_RESULTLEN];
	string_t *dir = t_str_new(64);
	const char *p;

	for (p = user->username; *p != '\0'; p++) {
		if (i_isalnum(*p) || *p == '_' || *p == '@' || *p == '-')
			str_append_c(dir, *p);
		else
			str_printfa(dir, "=%02X", (unsigned char)*p);
	}
	if (str_len(dir) <= RBD_LIST_USER_DIR_MAX_LEN)
		return str_c(dir);
	sha256_get_digest(user->username, strlen(user->username), digest);
	return t_strconcat("=H", binary_to_hex(digest, sizeof(digest)), NULL);
}

const char *rbd_list_cache_root(struct mailbox_list *list)
{
	/* Dovecot leaves index_dir NULL when it equals the root, and sets
	   it to "" for INDEX=MEMORY. */
	const char *root = list->set.index_dir != NULL ? list->set.index_dir
	                                               : list->set.root_dir;

	if (root == NULL || *root == '\0')
		return NULL;
	return t_strconcat(root, "/", rbd_list_user_dir(list), NULL);
}

const char *rbd_list_cache_path(struct mailbox_list *list,
                                const guid_128_t mailbox_guid)
{
	const char *root = rbd_list_cache_root(list);

	return root == NULL
	               ? NULL
	               : t_strconcat(root, "/",
	                             guid_128_to_string(mailbox_guid), NULL);
}

/* A mailbox's cache is keyed by its GUID, not its name: a name deleted and
   re-created, or renamed, on another node leads to another directory, so
   no process ever replaces files another process of this node still has
   open, and a rename keeps its cache. An open mailbox has its path set
   from the GUID it opened (rbd_mailbox_open); this is for the rest, which
   must look the name up. The cache lives with the index (no separate
   INDEX_CACHE dir, which would be keyed by name). */
static int rbd_list_get_path(struct mailbox_list *list, const char *name,
                             enum mailbox_list_path_type type,
                             const char **path_r)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);
	const char *root = rbd_list_cache_root(list);
	struct rbd_user *user;
	struct rbd_error err;
	guid_128_t guid;

	*path_r = NULL;
	switch (type) {
	case MAILBOX_LIST_PATH_TYPE_INDEX:
	case MAILBOX_LIST_PATH_TYPE_CONTROL:
	case MAILBOX_LIST_PATH_TYPE_LIST_INDEX:
		break;
	default:
		return 0;
	}
	if (root == NULL)
		return 0;
	if (name == NULL) {
		*path_r = root;
		return 1;
	}
	if (rlist->looked_up_name != NULL &&
	    strcmp(rlist->looked_up_name, name) == 0 &&
	    rbd_command_stamped(&rlist->looked_up_at)) {
		*path_r = rbd_list_cache_path(list, rlist->looked_up_guid);
		return 1;
	}
	if (rbd_list_get_user(list, &user) < 0)
		return -1;
	if (rbd_lookup_mailbox(user, name, guid, &err) != RBD_OK) {
		if (err.code == RBD_ERR_NOT_FOUND)
			return 0;
		rbd_list_set_error(list, name, &err);
		return -1;
	}
	*path_r = rbd_list_cache_path(list, guid);
	return 1;
}

void rbd_list_looked_up(struct mailbox_list *list, const char *name,
                        const guid_128_t guid)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);

	if (null_strcmp(rlist->looked_up_name, name) != 0) {
		i_free(rlist->looked_up_name);
		rlist->looked_up_name = i_strdup(name);
	}
	guid_128_copy(rlist->looked_up_guid, guid);
	rbd_command_stamp(&rlist->looked_up_at);
}

static const char *
rbd_list_get_temp_prefix(struct mailbox_list *list ATTR_UNUSED,
                         bool global ATTR_UNUSED)
{
	return RBD_LIST_TEMP_PREFIX;
}

static void rbd_list_add(struct rbd_list_iterate_context *ctx,
                         const char *vname, enum mailbox_info_flags flags)
{
	struct mailbox_list *list = ctx->ctx.list;
	struct mailbox_info *info;

	if ((ctx->ctx.flags & MAILBOX_LIST_ITER_RETURN_SUBSCRIBED) != 0)
		mailbox_list_set_subscription_flags(list, vname, &flags);
	if (imap_match(ctx->ctx.glob, vname) != IMAP_MATCH_YES)
		return;
	info = array_append_space(&ctx->infos);
	info->ns = list->ns;
	info->vname = p_strdup(ctx->ctx.pool, vname);
	info->flags = flags;
}

static bool rbd_list_names_guid(const struct rbd_mailbox_entries *entries,
                                const guid_128_t guid)
{
	size_t i;

	for (i = 0; i < entries->count; i++) {
		if (!entries->entries[i].nonexistent &&
		    guid_128_equals(entries->entries[i].guid, guid))
			return TRUE;
	}
	return FALSE;
}

/* Caches are kept by mailbox GUID, so the cache of a mailbox deleted on
   another node is never opened again, and stays behind. The first listing
   of a session removes those (see RBD_LIST_CACHE_SWEEP_AGE_SECS). */
static void rbd_list_sweep_cache(struct mailbox_list *list,
                                 const struct rbd_mailbox_entries *entries)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);
	const char *root, *path, *error;
	struct dirent *d;
	struct stat st;
	guid_128_t guid;
	DIR *dir;

	if (rlist->cache_swept)
		return;
	rlist->cache_swept = TRUE;
	if ((root = rbd_list_cache_root(list)) == NULL ||
	    (dir = opendir(root)) == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		if (guid_128_from_string(d->d_name, guid) < 0 ||
		    rbd_list_names_guid(entries, guid))
			continue;
		path = t_strconcat(root, "/", d->d_name, NULL);
		if (stat(path, &st) < 0 ||
		    st.st_mtime > ioloop_time - RBD_LIST_CACHE_SWEEP_AGE_SECS)
			continue;
		e_debug(list->ns->user->event,
		        "rbd: removing the index cache %s of a mailbox that no "
		        "longer exists",
		        path);
		if (unlink_directory(path, UNLINK_DIRECTORY_FLAG_RMDIR,
		                     &error) < 0 &&
		    errno != ENOENT)
			e_warning(list->ns->user->event,
			          "rbd: index cache %s: %s", path, error);
	}
	(void)closedir(dir);
}

static int rbd_list_fill(struct rbd_list_iterate_context *ctx)
{
	struct mailbox_list *list = ctx->ctx.list;
	char sep = mail_namespace_get_sep(list->ns);
	struct mailbox_tree_context *tree;
	struct mailbox_tree_iterate_context *iter;
	struct mailbox_node *node;
	struct rbd_mailbox_entries *entries;
	struct rbd_user *user;
	struct rbd_error err;
	const char *vname, *name;
	uint8_t *guid;
	bool created;
	size_t i;

	if (rbd_list_get_user(list, &user) < 0)
		return -1;
	if (rbd_list_mailboxes(user, &entries, &err) != RBD_OK) {
		rbd_list_set_error(list, "", &err);
		return -1;
	}
	/* A tree gives parents that only exist as a path (\NonExistent) and
	   the \HasChildren/\HasNoChildren flags. */
	tree = mailbox_tree_init(sep);
	mailbox_tree_set_parents_nonexistent(tree);
	hash_table_create(&ctx->guids, ctx->ctx.pool, entries->count, str_hash,
	                  strcmp);
	for (i = 0; i < entries->count; i++) {
		if (entries->entries[i].nonexistent)
			continue;
		name = p_strdup(ctx->ctx.pool, entries->entries[i].name);
		guid = p_memdup(ctx->ctx.pool, entries->entries[i].guid,
		                GUID_128_SIZE);
		hash_table_insert(ctx->guids, name, guid);
		vname = mailbox_list_get_vname(list, entries->entries[i].name);
		node = mailbox_tree_get(tree, vname, &created);
		node->flags &= ENUM_NEGATE(MAILBOX_NONEXISTENT);
	}
	if ((list->ns->flags & NAMESPACE_FLAG_INBOX_USER) != 0) {
		/* Always listed: Dovecot creates it on first open. */
		node = mailbox_tree_get(tree, "INBOX", &created);
		node->flags &= ENUM_NEGATE(MAILBOX_NONEXISTENT);
	}
	rbd_list_sweep_cache(list, entries);
	rbd_mailbox_entries_free(&entries);

	iter = mailbox_tree_iterate_init(tree, NULL, 0);
	while ((node = mailbox_tree_iterate_next(iter, &vname)) != NULL) {
		enum mailbox_info_flags flags = node->flags;

		flags |= node->children != NULL ? MAILBOX_CHILDREN
		                                : MAILBOX_NOCHILDREN;
		rbd_list_add(ctx, vname, flags);
	}
	mailbox_tree_iterate_deinit(&iter);
	mailbox_tree_deinit(&tree);
	return 0;
}

static struct mailbox_list_iterate_context *
rbd_list_iter_init(struct mailbox_list *list, const char *const *patterns,
                   enum mailbox_list_iter_flags flags)
{
	struct rbd_list_iterate_context *ctx;
	pool_t pool;

	if ((flags & MAILBOX_LIST_ITER_SELECT_SUBSCRIBED) != 0) {
		/* Subscriptions were refreshed from RADOS by the caller. */
		return mailbox_list_subscriptions_iter_init(list, patterns,
		                                            flags);
	}
	pool = pool_alloconly_create("rbd list iter", 1024);
	ctx = p_new(pool, struct rbd_list_iterate_context, 1);
	ctx->ctx.pool = pool;
	ctx->ctx.list = list;
	ctx->ctx.flags = flags;
	ctx->ctx.glob = imap_match_init_multiple(
	        pool, patterns, TRUE, mail_namespace_get_sep(list->ns));
	array_create(&ctx->ctx.module_contexts, pool, sizeof(void *), 5);
	p_array_init(&ctx->infos, pool, 16);
	if (rbd_list_fill(ctx) < 0)
		ctx->ctx.failed = TRUE;
	else {
		struct rbd_list *rlist =
		        container_of(list, struct rbd_list, list);

		if (rlist->listing == NULL)
			rlist->listing = ctx;
	}
	return &ctx->ctx;
}

bool rbd_list_listed_guid(struct mailbox_list *list, const char *name,
                          guid_128_t guid_r)
{
	struct rbd_list *rlist = container_of(list, struct rbd_list, list);
	const uint8_t *guid;

	/* A name listed a moment ago in the same run of commands: a rename
	   on another node meanwhile is as if it came after it, as for the
	   one name check per command (rbd_mailbox_check_name). */
	if (rlist->listing == NULL ||
	    (guid = hash_table_lookup(rlist->listing->guids, name)) == NULL)
		return FALSE;
	guid_128_copy(guid_r, guid);
	return TRUE;
}

static const struct mailbox_info *
rbd_list_iter_next(struct mailbox_list_iterate_context *_ctx)
{
	struct rbd_list_iterate_context *ctx;

	if ((_ctx->flags & MAILBOX_LIST_ITER_SELECT_SUBSCRIBED) != 0)
		return mailbox_list_subscriptions_iter_next(_ctx);
	ctx = container_of(_ctx, struct rbd_list_iterate_context, ctx);
	if (ctx->ctx.failed || ctx->next >= array_count(&ctx->infos))
		return NULL;
	return array_idx(&ctx->infos, ctx->next++);
}

static int rbd_list_iter_deinit(struct mailbox_list_iterate_context *_ctx)
{
	struct rbd_list *rlist = container_of(_ctx->list, struct rbd_list, list);
	struct rbd_list_iterate_context *ctx;
	int ret = _ctx->failed ? -1 : 0;

	if ((_ctx->flags & MAILBOX_LIST_ITER_SELECT_SUBSCRIBED) != 0)
		return mailbox_list_subscriptions_iter_deinit(_ctx);
	ctx = container_of(_ctx, struct rbd_list_iterate_context, ctx);
	if (rlist->listing == ctx)
		rlist->listing = NULL;
	if (hash_table_is_created(ctx->guids))
		hash_table_destroy(&ctx->guids);
	pool_unref(&_ctx->pool);
	return ret;
}

static int rbd_list_subscriptions_refresh(struct mailbox_list *src_list,
                                          struct mailbox_list *dest_list)
{
	struct rbd_mailbox_entries *entries;
	struct mailbox_node *node;
	struct rbd_user *user;
	struct rbd_error err;
	bool created;
	size_t i;

	if (rbd_list_get_user(src_list, &user) < 0) {
		mailbox_list_set_error(
		        dest_list, MAIL_ERROR_UNAVAILABLE,
		        mailbox_list_get_last_error(src_list, NULL));
		return -1;
	}
	if (rbd_list_mailboxes(user, &entries, &err) != RBD_OK) {
		rbd_list_set_error(dest_list, "", &err);
		return -1;
	}
	if (dest_list->subscriptions != NULL)
		mailbox_tree_deinit(&dest_list->subscriptions);
	dest_list->subscriptions =
	        mailbox_tree_init(mail_namespace_get_sep(src_list->ns));
	for (i = 0; i < entries->count; i++) {
		if (!entries->entries[i].subscribed)
			continue;
		node = mailbox_tree_get(
		        dest_list->subscriptions,
		        mailbox_list_get_vname(src_list,
		                               entries->entries[i].name),
		        &created);
		node->flags = MAILBOX_SUBSCRIBED;
	}
	rbd_mailbox_entries_free(&entries);
	return 0;
}

static int rbd_list_set_subscribed(struct mailbox_list *list, const char *name,
                                   bool set)
{
	struct rbd_user *user;
	struct rbd_error err;

	if (rbd_list_get_user(list, &user) < 0)
		return -1;
	if (rbd_set_subscribed(user, name, set ? 1 : 0, &err) != RBD_OK) {
		rbd_list_set_error(list, name, &err);
		return -1;
	}
	return 0;
}

/* The cache goes in rbd_mailbox_delete, which knows the mailbox's GUID. */
static int rbd_list_delete_mailbox(struct mailbox_list *list, const char *name)
{
	struct rbd_user *user;
	struct rbd_error err;

	if (rbd_list_get_user(list, &user) < 0)
		return -1;
	if (rbd_delete_mailbox(user, name, &err) != RBD_OK) {
		rbd_list_set_error(list, name, &err);
		return -1;
	}
	return 0;
}

static int rbd_list_delete_dir(struct mailbox_list *list, const char *name)
{
	/* Only mailboxes exist in RADOS: a parent that is merely a path has
	   nothing to delete. */
	mailbox_list_set_error(list, MAIL_ERROR_NOTFOUND,
	                       T_MAIL_ERR_MAILBOX_NOT_FOUND(name));
	return -1;
}

static int rbd_list_rename_mailbox(struct mailbox_list *oldlist,
                                   const char *oldname,
                                   struct mailbox_list *newlist ATTR_UNUSED,
                                   const char *newname)
{
	struct rbd_user *user;
	struct rbd_error err;

	if (rbd_list_get_user(oldlist, &user) < 0)
		return -1;
	if (rbd_rename_mailbox(user, oldname, newname, RBD_HIERARCHY_SEP,
	                       &err) != RBD_OK) {
		if (err.code == RBD_ERR_EXISTS) {
			mailbox_list_set_error(oldlist, MAIL_ERROR_EXISTS,
			                       "Target mailbox already exists");
			return -1;
		}
		rbd_list_set_error(oldlist, oldname, &err);
		return -1;
	}
	return 0;
}

struct mailbox_list rbd_mailbox_list = {
        .name = RBD_LIST_NAME,
        .props = MAILBOX_LIST_PROP_NO_ROOT | MAILBOX_LIST_PROP_NO_NOSELECT |
                 MAILBOX_LIST_PROP_NO_LIST_INDEX |
                 MAILBOX_LIST_PROP_NO_INTERNAL_NAMES |
                 MAILBOX_LIST_PROP_AUTOCREATE_DIRS,
        .mailbox_name_max_length = MAILBOX_LIST_NAME_MAX_LENGTH,
        .v =
                {
                        .alloc = rbd_list_alloc,
                        .deinit = rbd_list_deinit,
                        .get_hierarchy_sep = rbd_list_get_hierarchy_sep,
                        .get_vname = mailbox_list_default_get_vname,
                        .get_storage_name =
                                mailbox_list_default_get_storage_name,
                        .get_path = rbd_list_get_path,
                        .get_temp_prefix = rbd_list_get_temp_prefix,
                        .iter_init = rbd_list_iter_init,
                        .iter_next = rbd_list_iter_next,
                        .iter_deinit = rbd_list_iter_deinit,
                        .subscriptions_refresh = rbd_list_subscriptions_refresh,
                        .set_subscribed = rbd_list_set_subscribed,
                        .delete_mailbox = rbd_list_delete_mailbox,
                        .delete_dir = rbd_list_delete_dir,
                        .delete_symlink = rbd_list_delete_dir,
                        .rename_mailbox = rbd_list_rename_mailbox,
                        .notify_init = rbd_list_notify_init,
                        .notify_next = rbd_list_notify_next,
                        .notify_deinit = rbd_list_notify_deinit,
                        .notify_wait = rbd_list_notify_wait,
                        .notify_flush = rbd_list_notify_flush,
                },
};
