/* The mailbox list class "rbd": the mailbox tree and the subscriptions are
   the user root object `r` in RADOS, read in one op. The only files are
   the optional per-node index cache under mail_location's path. */

#include "lib.h"
#include "array.h"
#include "imap-match.h"
#include "mail-namespace.h"
#include "mailbox-tree.h"
#include "mailbox-list-subscriptions.h"
#include "unlink-directory.h"
#include "rbd-mail-storage.h"

#define RBD_LIST_TEMP_PREFIX ".temp."

struct rbd_list_iterate_context {
	struct mailbox_list_iterate_context ctx;
	ARRAY(struct mailbox_info) infos;
	unsigned int next;
};

static struct mailbox_list *rbd_list_alloc(void)
{
	struct mailbox_list *list;
	pool_t pool;

	pool = pool_alloconly_create("rbd list", 1024);
	list = p_new(pool, struct mailbox_list, 1);
	*list = rbd_mailbox_list;
	list->pool = pool;
	return list;
}

static void rbd_list_deinit(struct mailbox_list *list)
{
	pool_unref(&list->pool);
}

static char rbd_list_get_hierarchy_sep(struct mailbox_list *list ATTR_UNUSED)
{
	return RBD_HIERARCHY_SEP;
}

int rbd_list_get_user(struct mailbox_list *list, struct rbd_user **user_r)
{
	struct mail_storage *storage =
	        mail_namespace_get_default_storage(list->ns);

	enum mail_error error;
	const char *errstr;

	if (rbd_storage_get_user(RBD_STORAGE(storage), user_r) < 0) {
		errstr = mail_storage_get_last_error(storage, &error);
		mailbox_list_set_error(list, error, errstr);
		return -1;
	}
	return 0;
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

/* Index cache paths: <root>/<mailbox name>. Without a root (INDEX=MEMORY)
   there is no path, and Dovecot keeps the index in memory. */
static int rbd_list_get_path(struct mailbox_list *list, const char *name,
                             enum mailbox_list_path_type type,
                             const char **path_r)
{
	/* Dovecot leaves index_dir NULL when it equals the root, and sets
	   it to "" for INDEX=MEMORY. */
	const char *root = list->set.index_dir != NULL ? list->set.index_dir
	                                               : list->set.root_dir;

	*path_r = NULL;
	switch (type) {
	case MAILBOX_LIST_PATH_TYPE_INDEX:
	case MAILBOX_LIST_PATH_TYPE_INDEX_CACHE:
	case MAILBOX_LIST_PATH_TYPE_INDEX_PRIVATE:
	case MAILBOX_LIST_PATH_TYPE_CONTROL:
	case MAILBOX_LIST_PATH_TYPE_LIST_INDEX:
		break;
	default:
		return 0;
	}
	if (root == NULL || *root == '\0')
		return 0;
	*path_r = name == NULL ? root : t_strconcat(root, "/", name, NULL);
	return 1;
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
	const char *vname;
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
	for (i = 0; i < entries->count; i++) {
		if (entries->entries[i].nonexistent)
			continue;
		vname = mailbox_list_get_vname(list, entries->entries[i].name);
		node = mailbox_tree_get(tree, vname, &created);
		node->flags &= ENUM_NEGATE(MAILBOX_NONEXISTENT);
	}
	if ((list->ns->flags & NAMESPACE_FLAG_INBOX_USER) != 0) {
		/* Always listed: Dovecot creates it on first open. */
		node = mailbox_tree_get(tree, "INBOX", &created);
		node->flags &= ENUM_NEGATE(MAILBOX_NONEXISTENT);
	}
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
	return &ctx->ctx;
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
	int ret = _ctx->failed ? -1 : 0;

	if ((_ctx->flags & MAILBOX_LIST_ITER_SELECT_SUBSCRIBED) != 0)
		return mailbox_list_subscriptions_iter_deinit(_ctx);
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

static int rbd_list_delete_mailbox(struct mailbox_list *list, const char *name)
{
	struct rbd_user *user;
	struct rbd_error err;
	const char *path, *error;

	if (rbd_list_get_user(list, &user) < 0)
		return -1;
	if (rbd_delete_mailbox(user, name, &err) != RBD_OK) {
		rbd_list_set_error(list, name, &err);
		return -1;
	}
	/* This node's cache of it goes too: Dovecot marked it deleted, and a
	   mailbox created under the same name must not inherit that mark.
	   Only the files: the directory may hold child mailboxes' caches. */
	if (rbd_list_get_path(list, name, MAILBOX_LIST_PATH_TYPE_INDEX, &path) >
	            0 &&
	    unlink_directory(path, UNLINK_DIRECTORY_FLAG_FILES_ONLY, &error) <
	            0)
		e_warning(list->ns->user->event, "rbd: index cache %s: %s",
		          path, error);
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
