/* The dict driver "rbd": Dovecot's dict API on RADOS omap, so whatever a
   mail user keeps in a dict (IMAP METADATA through mail_attribute_dict,
   quota's dict backend, last_login, ...) is the same on every node.

   URI: rbd:[<setting>=<value>[:<setting>=<value>...]]. With no settings the
   dict uses the plugin { rbd_* } settings of the mail user it was opened
   for, exactly as the rbd storage does (cluster, cephx user, index pool,
   op timeout, namespace). ceph_conf, ceph_user, pool, index_pool and
   op_timeout override the rbd_ setting of that name; a dict opened outside
   a mail user (no plugin settings) needs them all.

   Where keys live: rbd_dict_get_store(); what one transaction is:
   rbd_dict_apply(). */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "mail-user.h"
#include "mail-storage-hooks.h"
#include "dict-transaction-memory.h"
#include "rbd-mail-storage.h"

/* Key of the event pointer that leads from a user's event to the user. */
#define RBD_DICT_USER_PTR "rbd_mail_user"
/* Entries read per RADOS call while iterating. */
#define RBD_DICT_ITER_PAGE 1000
/* Length of a mailbox GUID in hex, as Dovecot writes it in dict keys. */
#define RBD_DICT_GUID_HEX_LEN 32

struct rbd_dict_setting {
	const char *name, *value;
};

/* An async commit not applied yet. */
struct rbd_dict_commit {
	struct dict_transaction_memory_context *ctx;
	dict_transaction_commit_callback_t *callback;
	void *context;
};

struct rbd_dict {
	struct dict dict;
	pool_t pool;
	/* rbd_* settings given in the URI. */
	ARRAY(struct rbd_dict_setting) uri_settings;
	/* Where the rbd service's socket is when no mail user says. */
	const char *base_dir;

	/* Set up by the first operation (rbd_dict_connect). */
	struct rbd_config *config;
	struct rbd_cluster *cluster;
	/* The mail user the dict was opened for and its storage namespace,
	   or NULL. */
	const char *owner, *owner_ns;
	/* The objects of priv_ns's own keys and of the keys every user
	   shares (rbd_dict_key_is_own). */
	struct rbd_dict_store *priv, *shared;
	char *priv_ns;
	/* priv has adopted its mailboxes' legacy shared entries. */
	bool priv_adopted;

	ARRAY(struct rbd_dict_commit) pending;
	struct timeout *to_pending;
};

struct rbd_dict_iterate_context {
	struct dict_iterate_context ctx;
	pool_t pool;
	struct rbd_dict_store *store;
	const char *prefix;
	size_t prefix_len;
	enum dict_iterate_flags flags;

	struct rbd_dict_entries *page;
	size_t next;
	const char *values[2];
	const char *error;
};

static const char *const rbd_dict_uri_setting_names[] = {
        "ceph_conf", "ceph_user", "pool", "index_pool", "op_timeout", NULL,
};

#define RBD_DICT(d) (container_of(d, struct rbd_dict, dict))

static const char *rbd_dict_error(const struct rbd_error *err)
{
	return t_strdup_printf("rbd: %s (%s)", err->message,
	                       rbd_code_name(err->code));
}

static int rbd_dict_parse_uri(struct rbd_dict *dict, const char *uri,
                              const char **error_r)
{
	struct rbd_config *scratch = rbd_config_new();
	struct rbd_dict_setting *setting;
	const char *const *args, *value;
	struct rbd_error err;
	int ret = 0;

	for (args = t_strsplit(uri, ":"); *args != NULL && ret == 0; args++) {
		if (**args == '\0')
			continue;
		value = strchr(*args, '=');
		if (value == NULL ||
		    !str_array_find(rbd_dict_uri_setting_names,
		                    t_strdup_until(*args, value))) {
			*error_r = t_strdup_printf(
			        "Invalid parameter '%s': expected one of "
			        "ceph_conf, ceph_user, pool, index_pool, "
			        "op_timeout (name=value)",
			        *args);
			ret = -1;
			break;
		}
		setting = array_append_space(&dict->uri_settings);
		setting->name = p_strconcat(dict->pool, "rbd_",
		                            t_strdup_until(*args, value), NULL);
		setting->value = p_strdup(dict->pool, value + 1);
		/* Checked now, so that a bad value fails dict_init. */
		if (rbd_config_set(scratch, setting->name, setting->value,
		                   &err) != RBD_OK) {
			*error_r = t_strdup(err.message);
			ret = -1;
		}
	}
	rbd_config_free(&scratch);
	return ret;
}

static int rbd_dict_init(struct dict *driver, const char *uri,
                         const struct dict_settings *set, struct dict **dict_r,
                         const char **error_r)
{
	struct rbd_dict *dict;
	pool_t pool;

	pool = pool_alloconly_create("rbd dict", 512);
	dict = p_new(pool, struct rbd_dict, 1);
	dict->pool = pool;
	dict->base_dir = p_strdup(pool, set->base_dir);
	dict->dict = *driver;
	p_array_init(&dict->uri_settings, pool, 4);
	i_array_init(&dict->pending, 4);
	if (rbd_dict_parse_uri(dict, uri, error_r) < 0) {
		array_free(&dict->pending);
		pool_unref(&pool);
		return -1;
	}
	*dict_r = &dict->dict;
	return 0;
}

static void rbd_dict_deinit(struct dict *_dict)
{
	struct rbd_dict *dict = RBD_DICT(_dict);

	/* dict_deinit() requires every commit to have finished. */
	i_assert(array_count(&dict->pending) == 0);
	timeout_remove(&dict->to_pending);
	array_free(&dict->pending);
	if (dict->priv != NULL)
		rbd_dict_store_close(&dict->priv);
	if (dict->shared != NULL)
		rbd_dict_store_close(&dict->shared);
	if (dict->cluster != NULL)
		rbd_cluster_unref(&dict->cluster);
	if (dict->config != NULL)
		rbd_config_free(&dict->config);
	i_free(dict->priv_ns);
	pool_unref(&dict->pool);
}

static struct mail_user *rbd_dict_find_user(struct event *event)
{
	struct mail_user *user;

	for (; event != NULL; event = event_get_parent(event)) {
		user = event_get_ptr(event, RBD_DICT_USER_PTR);
		if (user != NULL)
			return user;
	}
	return NULL;
}

/* The settings are resolved at the first operation, not in init: plugins
   earlier in the hook order (lib10_quota, lib10_last_login) open their
   dicts in their mail_user_created hooks, before ours has marked the user's
   event (rbd_dict_mail_user_created). */
static int rbd_dict_connect(struct rbd_dict *dict, const char **error_r)
{
	const struct rbd_dict_setting *setting;
	struct mail_user *user;
	struct rbd_config *config;
	struct rbd_error err;

	if (dict->cluster != NULL)
		return 0;
	user = rbd_dict_find_user(dict->dict.event);
	if (user == NULL) {
		config = rbd_config_new();
		rbd_config_set_default_service(config, dict->base_dir);
	} else if (rbd_user_config(user, &config, error_r) < 0)
		return -1;
	array_foreach(&dict->uri_settings, setting)
	{
		if (rbd_config_set(config, setting->name, setting->value,
		                   &err) != RBD_OK)
			i_unreached(); /* checked by rbd_dict_parse_uri() */
	}
	if (rbd_cluster_get(config, &dict->cluster, &err) != RBD_OK) {
		*error_r = rbd_dict_error(&err);
		rbd_config_free(&config);
		return -1;
	}
	dict->config = config;
	if (user != NULL) {
		dict->owner = p_strdup(dict->pool, user->username);
		dict->owner_ns = p_strdup(dict->pool, rbd_user_namespace(user));
	}
	return 0;
}

/* TRUE if `key` is a mailbox's shared/ METADATA entry: Dovecot
   (index-attribute.c) writes "shared/<mailbox GUID in hex>/<entry>". */
static bool rbd_dict_key_is_mailbox_shared(const char *key)
{
	const char *guid;

	if (!str_begins(key, DICT_PATH_SHARED))
		return FALSE;
	guid = key + strlen(DICT_PATH_SHARED);
	return strspn(guid, "0123456789abcdef") == RBD_DICT_GUID_HEX_LEN &&
	       guid[RBD_DICT_GUID_HEX_LEN] == '/';
}

/* TRUE if `key` belongs to `username`: priv/ keys, and the shared/
   METADATA entries of the user's mailboxes. Those are shared with whoever
   may see the mailbox (ACLs), not with every user: a mailbox GUID is unique
   only within one user (`doveadm mailbox create -g` or dsync from a
   template give two users the same one), so keyed by GUID alone one user
   would read and overwrite another's entries. The other shared/ keys
   (acl_shared_dict, last_login, ...) name the users they are about and
   mean the same for every user. */
static bool rbd_dict_key_is_own(const char *username, const char *key)
{
	if (!str_begins(key, DICT_PATH_SHARED))
		return TRUE;
	return username != NULL && *username != '\0' &&
	       rbd_dict_key_is_mailbox_shared(key);
}

/* Earlier versions kept mailbox shared/ entries with the keys every user
   shares: the first access adopts the user's own (see
   rbd_dict_store_adopt and doc/design.md, "Isolation and operator
   errors"). */
static int rbd_dict_adopt(struct rbd_dict *dict, const char *key,
                          const char **error_r)
{
	struct rbd_error err;

	if (dict->priv_adopted || !rbd_dict_key_is_mailbox_shared(key))
		return 0;
	if (rbd_dict_store_adopt(dict->priv, "", DICT_PATH_SHARED, &err) !=
	    RBD_OK) {
		*error_r = rbd_dict_error(&err);
		return -1;
	}
	dict->priv_adopted = TRUE;
	return 0;
}

/* The object holding `key`. A key of the user the dict was opened for
   (rbd_dict_key_is_own) is in that user's storage namespace
   (rbd_namespace); of any other user, in the namespace named like the
   user, the storage's default. The keys every user shares are in the
   default namespace, which no user's storage uses. */
static int rbd_dict_get_store(struct rbd_dict *dict, const char *username,
                              const char *key, struct rbd_dict_store **store_r,
                              const char **error_r)
{
	struct rbd_dict_store **store;
	const char *ns;
	struct rbd_error err;

	if (rbd_dict_connect(dict, error_r) < 0)
		return -1;
	if (!rbd_dict_key_is_own(username, key)) {
		store = &dict->shared;
		ns = "";
	} else {
		store = &dict->priv;
		ns = dict->owner != NULL && strcmp(username, dict->owner) == 0
		             ? dict->owner_ns
		             : username;
		if (dict->priv != NULL && strcmp(dict->priv_ns, ns) != 0)
			rbd_dict_store_close(&dict->priv);
	}
	if (*store == NULL) {
		if (rbd_dict_store_open(dict->cluster, ns, rbd_command_clock(),
		                        store, &err) != RBD_OK) {
			*error_r = rbd_dict_error(&err);
			return -1;
		}
		if (store == &dict->priv) {
			i_free(dict->priv_ns);
			dict->priv_ns = i_strdup(ns);
			dict->priv_adopted = FALSE;
		}
	}
	if (store == &dict->priv && rbd_dict_adopt(dict, key, error_r) < 0)
		return -1;
	*store_r = *store;
	return 0;
}

/* ---- transactions ---- */

/* One transaction is one RADOS write op on one object, so it is applied
   whole or not at all. A user's own keys and the keys every user shares
   live in different objects: a transaction mixing them is refused rather
   than applied in two ops. Dovecot's own callers never mix them
   (index-attribute.c keeps one transaction per attribute type). */
static enum dict_commit_ret
rbd_dict_apply(struct rbd_dict *dict,
               struct dict_transaction_memory_context *ctx,
               const char **error_r)
{
	const struct dict_transaction_memory_change *changes;
	struct rbd_dict_change *ops;
	struct rbd_dict_store *store;
	struct rbd_error err;
	unsigned int i, count;
	const char *username = ctx->ctx.set.username;
	bool own;
	int missed;

	changes = array_get(&ctx->changes, &count);
	if (count == 0)
		return DICT_COMMIT_RET_OK;
	own = rbd_dict_key_is_own(username, changes[0].key);
	ops = t_new(struct rbd_dict_change, count);
	for (i = 0; i < count; i++) {
		if (rbd_dict_key_is_own(username, changes[i].key) != own) {
			*error_r = "rbd: a transaction cannot change both "
			           "a user's own keys and keys all users share";
			return DICT_COMMIT_RET_FAILED;
		}
		ops[i].key = changes[i].key;
		switch (changes[i].type) {
		case DICT_CHANGE_TYPE_SET:
			ops[i].op = RBD_DICT_SET;
			ops[i].value = changes[i].value.str;
			break;
		case DICT_CHANGE_TYPE_UNSET:
			ops[i].op = RBD_DICT_UNSET;
			break;
		case DICT_CHANGE_TYPE_INC:
			ops[i].op = RBD_DICT_INC;
			ops[i].diff = changes[i].value.diff;
			break;
		}
	}
	if (rbd_dict_get_store(dict, username, changes[0].key, &store,
	                       error_r) < 0)
		return DICT_COMMIT_RET_FAILED;
	if (rbd_dict_store_commit(store, ops, count, &missed, &err) != RBD_OK) {
		*error_r = rbd_dict_error(&err);
		/* A timed-out op may still have been applied. */
		return err.code == RBD_ERR_UNKNOWN ||
		                       err.code == RBD_ERR_UNAVAILABLE
		               ? DICT_COMMIT_RET_WRITE_UNCERTAIN
		               : DICT_COMMIT_RET_FAILED;
	}
	return missed != 0 ? DICT_COMMIT_RET_NOTFOUND : DICT_COMMIT_RET_OK;
}

static void rbd_dict_commit_now(struct rbd_dict *dict,
                                const struct rbd_dict_commit *commit)
{
	struct dict_commit_result result;
	pool_t pool = commit->ctx->pool;

	i_zero(&result);
	result.ret = rbd_dict_apply(dict, commit->ctx, &result.error);
	commit->callback(&result, commit->context);
	pool_unref(&pool);
}

/* Applies async commits in the order they were made. Every other
   operation runs this first, so a process reads its own writes. */
static void rbd_dict_run_pending(struct rbd_dict *dict)
{
	struct rbd_dict_commit commit;

	timeout_remove(&dict->to_pending);
	while (array_count(&dict->pending) > 0) {
		commit = *array_front(&dict->pending);
		array_pop_front(&dict->pending);
		rbd_dict_commit_now(dict, &commit);
	}
}

static struct dict_transaction_context *
rbd_dict_transaction_init(struct dict *_dict)
{
	struct dict_transaction_memory_context *ctx;
	pool_t pool;

	pool = pool_alloconly_create("rbd dict transaction", 1024);
	ctx = p_new(pool, struct dict_transaction_memory_context, 1);
	dict_transaction_memory_init(ctx, _dict, pool);
	return &ctx->ctx;
}

/* An async commit runs from the ioloop, after the caller's current step:
   last_login commits from its mail_user_created hook, before the user's
   event leads to the user (see rbd_dict_connect). */
static void
rbd_dict_transaction_commit(struct dict_transaction_context *_ctx, bool async,
                            dict_transaction_commit_callback_t *callback,
                            void *context)
{
	struct rbd_dict *dict = RBD_DICT(_ctx->dict);
	struct rbd_dict_commit commit = {
	        .ctx = container_of(
	                _ctx, struct dict_transaction_memory_context, ctx),
	        .callback = callback,
	        .context = context,
	};

	if (!async) {
		rbd_dict_run_pending(dict);
		rbd_dict_commit_now(dict, &commit);
		return;
	}
	array_push_back(&dict->pending, &commit);
	if (dict->to_pending == NULL)
		dict->to_pending =
		        timeout_add_short(0, rbd_dict_run_pending, dict);
}

static void rbd_dict_wait(struct dict *_dict)
{
	rbd_dict_run_pending(RBD_DICT(_dict));
}

static bool rbd_dict_switch_ioloop(struct dict *_dict)
{
	struct rbd_dict *dict = RBD_DICT(_dict);

	if (dict->to_pending == NULL)
		return FALSE;
	dict->to_pending = io_loop_move_timeout(&dict->to_pending);
	return TRUE;
}

/* ---- lookups ---- */

static int rbd_dict_lookup(struct dict *_dict,
                           const struct dict_op_settings *set, pool_t pool,
                           const char *key, const char **value_r,
                           const char **error_r)
{
	struct rbd_dict *dict = RBD_DICT(_dict);
	struct rbd_dict_store *store;
	struct rbd_buffer *value;
	struct rbd_error err;

	*value_r = NULL;
	rbd_dict_run_pending(dict);
	if (rbd_dict_get_store(dict, set->username, key, &store, error_r) < 0)
		return -1;
	switch (rbd_dict_store_lookup(store, key, &value, &err)) {
	case RBD_OK:
		*value_r = p_strndup(pool, value->data, value->size);
		rbd_buffer_free(&value);
		return 1;
	case RBD_ERR_NOT_FOUND:
		return 0;
	default:
		*error_r = rbd_dict_error(&err);
		return -1;
	}
}

/* ---- iteration ---- */

static struct dict_iterate_context *
rbd_dict_iterate_init(struct dict *_dict, const struct dict_op_settings *set,
                      const char *path, enum dict_iterate_flags flags)
{
	struct rbd_dict *dict = RBD_DICT(_dict);
	struct rbd_dict_iterate_context *ctx;
	const char *error;
	pool_t pool;

	pool = pool_alloconly_create("rbd dict iterate", 256);
	ctx = p_new(pool, struct rbd_dict_iterate_context, 1);
	ctx->ctx.dict = _dict;
	ctx->pool = pool;
	ctx->prefix = p_strdup(pool, path);
	ctx->prefix_len = strlen(path);
	ctx->flags = flags;
	rbd_dict_run_pending(dict);
	if (rbd_dict_get_store(dict, set->username, path, &ctx->store, &error) <
	    0)
		ctx->error = p_strdup(pool, error);
	return &ctx->ctx;
}

/* Reads the page after the current one; FALSE at the end or on error. */
static bool rbd_dict_iterate_next_page(struct rbd_dict_iterate_context *ctx)
{
	struct rbd_error err;
	const char *after = "";
	/* The exact key is the first with its own prefix, if it exists. */
	bool exact = (ctx->flags & DICT_ITERATE_FLAG_EXACT_KEY) != 0;

	if (ctx->page != NULL) {
		if (ctx->page->more == 0 || exact)
			return FALSE;
		after = t_strdup(ctx->page->entries[ctx->page->count - 1].key);
		rbd_dict_entries_free(&ctx->page);
	}
	if (rbd_dict_store_list(ctx->store, ctx->prefix, after,
	                        exact ? 1 : RBD_DICT_ITER_PAGE, &ctx->page,
	                        &err) != RBD_OK) {
		ctx->error = p_strdup(ctx->pool, rbd_dict_error(&err));
		return FALSE;
	}
	ctx->next = 0;
	return TRUE;
}

static bool rbd_dict_iterate_wanted(struct rbd_dict_iterate_context *ctx,
                                    const char *key)
{
	if ((ctx->flags & DICT_ITERATE_FLAG_RECURSE) != 0)
		return TRUE;
	if ((ctx->flags & DICT_ITERATE_FLAG_EXACT_KEY) != 0)
		return key[ctx->prefix_len] == '\0';
	/* One level: "foo/" finds "foo/a", not "foo/a/b". */
	return strchr(key + ctx->prefix_len, '/') == NULL;
}

/* Entries come in key order: SORT_BY_KEY needs nothing, and like the file
   driver this one does not sort by value. */
static bool rbd_dict_iterate(struct dict_iterate_context *_ctx,
                             const char **key_r, const char *const **values_r)
{
	struct rbd_dict_iterate_context *ctx =
	        container_of(_ctx, struct rbd_dict_iterate_context, ctx);
	const struct rbd_dict_entry *entry;

	if (ctx->error != NULL)
		return FALSE;
	for (;;) {
		if (ctx->page == NULL || ctx->next == ctx->page->count) {
			if (!rbd_dict_iterate_next_page(ctx))
				return FALSE;
			continue;
		}
		entry = &ctx->page->entries[ctx->next++];
		if (rbd_dict_iterate_wanted(ctx, entry->key))
			break;
	}
	*key_r = entry->key;
	ctx->values[0] = entry->value;
	*values_r = ctx->values;
	return TRUE;
}

static int rbd_dict_iterate_deinit(struct dict_iterate_context *_ctx,
                                   const char **error_r)
{
	struct rbd_dict_iterate_context *ctx =
	        container_of(_ctx, struct rbd_dict_iterate_context, ctx);
	int ret = ctx->error != NULL ? -1 : 0;

	*error_r = t_strdup(ctx->error);
	if (ctx->page != NULL)
		rbd_dict_entries_free(&ctx->page);
	pool_unref(&ctx->pool);
	return ret;
}

static struct dict dict_driver_rbd = {
        .name = "rbd",
        .v =
                {
                        .init = rbd_dict_init,
                        .deinit = rbd_dict_deinit,
                        .wait = rbd_dict_wait,
                        .lookup = rbd_dict_lookup,
                        .iterate_init = rbd_dict_iterate_init,
                        .iterate = rbd_dict_iterate,
                        .iterate_deinit = rbd_dict_iterate_deinit,
                        .transaction_init = rbd_dict_transaction_init,
                        .transaction_commit = rbd_dict_transaction_commit,
                        .transaction_rollback =
                                dict_transaction_memory_rollback,
                        .set = dict_transaction_memory_set,
                        .unset = dict_transaction_memory_unset,
                        .atomic_inc = dict_transaction_memory_atomic_inc,
                        .switch_ioloop = rbd_dict_switch_ioloop,
                },
};

/* A dict driver is given only an event whose ancestor is the user's: this
   pointer is how it finds the user's plugin settings. It stays set for the
   user's whole life; every dict opened for the user is deinitialised
   before the user is freed. */
static void rbd_dict_mail_user_created(struct mail_user *user)
{
	event_set_ptr(user->event, RBD_DICT_USER_PTR, user);
}

static struct mail_storage_hooks rbd_dict_hooks = {
        .mail_user_created = rbd_dict_mail_user_created,
};

void rbd_dict_register(struct module *module)
{
	dict_driver_register(&dict_driver_rbd);
	mail_storage_hooks_add(module, &rbd_dict_hooks);
}

void rbd_dict_unregister(void)
{
	mail_storage_hooks_remove(&rbd_dict_hooks);
	dict_driver_unregister(&dict_driver_rbd);
}
