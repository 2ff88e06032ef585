/* lib21_rbd_acl_plugin.so: the ACLs of rbd mailboxes in RADOS.

   Dovecot 2.3's acl plugin has one backend, vfile, which keeps a
   mailbox's ACL in a file (dovecot-acl) in the mailbox's control
   directory. On rbd that directory is the node's index cache: an ACL set
   there is seen by no other node and lost with the cache. So for the
   mailbox lists of the rbd storage this module keeps vfile's backend
   (its settings, global ACL file and rights cache) and replaces what it
   does with per-mailbox ACLs (the object vfuncs): those live in the
   dictionary object `d` of the mailbox owner's RADOS namespace, one key
   per identifier:

     rbd.acl/<mailbox GUID>/<identifier>   = rights, as in dovecot-acl
     rbd.acl/<mailbox GUID>/-<identifier>  = negative rights
     rbd.acl/root/...                       the namespace's default ACL

   Keyed by GUID, an ACL follows its mailbox through renames, and a name
   deleted and created again starts without one (rbd_mailbox_delete
   removes the keys). A change of one identifier writes only its keys, in
   one op guarded by the values it read, so two nodes changing the same
   mailbox's ACL never lose each other's change.

   Reading: every ACL of the namespace and its mailbox list are read in
   one snapshot (two reads) once per command and process; every rights
   check of that command uses it, however many mailboxes a LIST shows. A
   change on another node is therefore seen from the next command on. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "mail-namespace.h"
#include "mail-storage-hooks.h"
#include "acl-api-private.h"
#include "acl-cache.h"
#include "acl-lookup-dict.h"
#include "acl-plugin.h"
#include "rbd-mail-storage.h"

#define RBD_ACL_LIST_CONTEXT(obj) MODULE_CONTEXT(obj, rbd_acl_list_module)
/* The key part that names the namespace's default ACL (object ""). */
#define RBD_ACL_ROOT "root"
/* Entries read per dictionary call. */
#define RBD_ACL_LIST_PAGE 1000

const char *rbd_acl_plugin_version = DOVECOT_ABI_VERSION;
const char *rbd_acl_plugin_dependencies[] = {"acl", "rbd", NULL};

void rbd_acl_plugin_init(struct module *module);
void rbd_acl_plugin_deinit(void);

/* What the rights cache keeps per object: the snapshot it was built from.
   The cache sized its records for vfile's (larger) validity struct, 96
   bytes in 2.3.19, and copies that many bytes: hence the room. */
union rbd_acl_validity {
	unsigned int generation;
	unsigned char room[256];
};

/* The namespace's ACL keys and mailbox list as read at one time. */
struct rbd_acl_snapshot {
	pool_t pool;
	struct timeval taken_at;
	/* Incremented by every read: a cached object of an older one is
	   built again. Never 0. */
	unsigned int generation;
	struct rbd_mailbox_entries *mailboxes;
	/* Keys without RBD_ACL_KEY_PREFIX, and their values, in key order. */
	ARRAY(struct rbd_dict_entry) entries;
};

struct rbd_acl_list {
	union mailbox_list_module_context module_ctx;
	/* The list's acl backend, once its object vfuncs are ours. */
	struct acl_backend *backend;
	struct rbd_acl_snapshot snapshot;
};

struct rbd_acl_nonowner_iter {
	struct acl_mailbox_list_context ctx;
	pool_t pool;
	ARRAY_TYPE(const_string) names;
	unsigned int next;
};

static MODULE_CONTEXT_DEFINE_INIT(rbd_acl_list_module,
                                  &mailbox_list_module_register);

static struct rbd_acl_list *rbd_acl_list(struct acl_backend *backend)
{
	struct rbd_acl_list *alist = RBD_ACL_LIST_CONTEXT(backend->list);

	i_assert(alist != NULL);
	return alist;
}

static void rbd_acl_snapshot_clear(struct rbd_acl_snapshot *snapshot)
{
	if (snapshot->mailboxes != NULL)
		rbd_mailbox_entries_free(&snapshot->mailboxes);
	if (snapshot->pool != NULL)
		pool_unref(&snapshot->pool);
	i_zero(&snapshot->taken_at);
}

/* A failed ACL read or write: the error goes to the storage (logged there),
   where the acl plugin reports it from. A mailbox open it fails answers
   with it (NO [UNAVAILABLE] when the cluster does not answer); other
   rights checks report Dovecot's internal error instead. err is NULL when
   the list has the error. */
static void rbd_acl_set_error(struct mailbox_list *list,
                              const struct rbd_error *err)
{
	struct mail_storage *storage =
	        mail_namespace_get_default_storage(list->ns);

	if (err != NULL)
		rbd_storage_set_error(storage, err);
	else
		mail_storage_copy_list_error(storage, list);
}

/* Reads the ACL keys of the namespace into the snapshot (paging). */
static int rbd_acl_read_keys(struct mailbox_list *list,
                             struct rbd_acl_snapshot *snapshot)
{
	struct rbd_dict_store *dict;
	struct rbd_dict_entries *page;
	struct rbd_dict_entry *entry;
	struct rbd_error err;
	const char *after = "";
	size_t i;
	bool more = TRUE;

	if (rbd_list_get_dict(list, &dict) < 0) {
		rbd_acl_set_error(list, NULL);
		return -1;
	}
	while (more) {
		if (rbd_dict_store_list(dict, RBD_ACL_KEY_PREFIX, after,
		                        RBD_ACL_LIST_PAGE, &page,
		                        &err) != RBD_OK) {
			rbd_acl_set_error(list, &err);
			return -1;
		}
		for (i = 0; i < page->count; i++) {
			entry = array_append_space(&snapshot->entries);
			entry->key =
			        p_strdup(snapshot->pool,
			                 page->entries[i].key +
			                         strlen(RBD_ACL_KEY_PREFIX));
			entry->value = p_strdup(snapshot->pool,
			                        page->entries[i].value);
			after = entry->key;
		}
		more = page->more != 0 && page->count > 0;
		after = t_strconcat(RBD_ACL_KEY_PREFIX, after, NULL);
		rbd_dict_entries_free(&page);
	}
	return 0;
}

/* The snapshot of this command: read once per command
   (rbd_command_stamped). */
static int rbd_acl_snapshot_get(struct acl_backend *backend,
                                struct rbd_acl_snapshot **snapshot_r)
{
	struct rbd_acl_snapshot *snapshot = &rbd_acl_list(backend)->snapshot;
	struct rbd_user *user;
	struct rbd_error err;

	*snapshot_r = snapshot;
	if (snapshot->pool != NULL &&
	    rbd_command_stamped(&snapshot->taken_at))
		return 0;
	rbd_acl_snapshot_clear(snapshot);
	snapshot->pool = pool_alloconly_create("rbd acl snapshot", 1024);
	p_array_init(&snapshot->entries, snapshot->pool, 16);
	if (++snapshot->generation == 0)
		snapshot->generation++;
	if (rbd_list_get_user(backend->list, &user) < 0) {
		rbd_acl_set_error(backend->list, NULL);
		rbd_acl_snapshot_clear(snapshot);
		return -1;
	}
	if (rbd_list_mailboxes(user, &snapshot->mailboxes, &err) != RBD_OK) {
		rbd_acl_set_error(backend->list, &err);
		rbd_acl_snapshot_clear(snapshot);
		return -1;
	}
	if (rbd_acl_read_keys(backend->list, snapshot) < 0) {
		rbd_acl_snapshot_clear(snapshot);
		return -1;
	}
	rbd_command_stamp(&snapshot->taken_at);
	return 0;
}

/* The key part of the object's ACL ("<GUID>" or RBD_ACL_ROOT), or NULL
   when the snapshot has no mailbox of that name. */
static const char *rbd_acl_object_key(const struct rbd_acl_snapshot *snapshot,
                                      const char *name)
{
	size_t i;

	if (*name == '\0')
		return RBD_ACL_ROOT;
	for (i = 0; i < snapshot->mailboxes->count; i++) {
		const struct rbd_mailbox_entry *entry =
		        &snapshot->mailboxes->entries[i];

		if (!entry->nonexistent && strcmp(entry->name, name) == 0)
			return guid_128_to_string(entry->guid);
	}
	return NULL;
}

/* Parses one entry of the snapshot ("<object key>/[-]<id>" = rights). */
static int rbd_acl_parse_entry(const struct rbd_dict_entry *entry,
                               size_t key_len, pool_t pool,
                               struct acl_rights *rights_r,
                               const char **error_r)
{
	const char *id = entry->key + key_len + 1;
	const char *const *names;

	i_zero(rights_r);
	names = acl_right_names_parse(pool, entry->value, error_r);
	if (*error_r != NULL)
		return -1;
	if (*id == '-') {
		id++;
		rights_r->neg_rights = names;
	} else {
		rights_r->rights = names;
	}
	if (acl_identifier_parse(id, rights_r) < 0) {
		*error_r = t_strdup_printf("Unknown ID '%s'", id);
		return -1;
	}
	rights_r->identifier = p_strdup(pool, rights_r->identifier);
	return 0;
}

/* Calls `fn` for each entry of the object `key` in the snapshot; stops
   at the first one `fn` returns FALSE for. */
static void
rbd_acl_foreach(const struct rbd_acl_snapshot *snapshot, const char *key,
                bool (*fn)(const struct rbd_dict_entry *entry, void *context),
                void *context)
{
	const struct rbd_dict_entry *entry;
	size_t key_len = strlen(key);

	array_foreach(&snapshot->entries, entry)
	{
		if (strncmp(entry->key, key, key_len) == 0 &&
		    entry->key[key_len] == '/' && !fn(entry, context))
			return;
	}
}

struct rbd_acl_add_context {
	struct acl_object *aclobj;
	size_t key_len;
};

static bool rbd_acl_add_right(const struct rbd_dict_entry *entry, void *context)
{
	struct rbd_acl_add_context *ctx = context;
	struct acl_rights rights;
	const char *error = NULL;

	if (rbd_acl_parse_entry(entry, ctx->key_len, ctx->aclobj->rights_pool,
	                        &rights, &error) < 0) {
		e_error(ctx->aclobj->backend->list->ns->user->event,
		        "acl: rbd: invalid ACL entry %s%s of mailbox %s: %s",
		        RBD_ACL_KEY_PREFIX, entry->key, ctx->aclobj->name,
		        error);
		return TRUE;
	}
	array_push_back(&ctx->aclobj->rights, &rights);
	return TRUE;
}

static struct acl_object *rbd_acl_object_init(struct acl_backend *backend,
                                              const char *name)
{
	struct acl_object *aclobj = i_new(struct acl_object, 1);

	aclobj->backend = backend;
	aclobj->name = i_strdup(name);
	return aclobj;
}

static bool rbd_acl_has_entries(const struct rbd_dict_entry *entry ATTR_UNUSED,
                                void *context)
{
	bool *found = context;

	*found = TRUE;
	return FALSE;
}

/* The nearest parent with an ACL of its own, else the default ACL, as
   vfile does (a new mailbox gets its parent's ACL). */
static struct acl_object *
rbd_acl_object_init_parent(struct acl_backend *backend, const char *child_name)
{
	struct rbd_acl_snapshot *snapshot;
	char sep = mailbox_list_get_hierarchy_sep(backend->list);
	const char *name = child_name, *key, *p;
	bool found = FALSE;

	if (rbd_acl_snapshot_get(backend, &snapshot) == 0) {
		while (!found && (p = strrchr(name, sep)) != NULL) {
			name = t_strdup_until(name, p);
			key = rbd_acl_object_key(snapshot, name);
			if (key != NULL)
				rbd_acl_foreach(snapshot, key,
				                rbd_acl_has_entries, &found);
		}
	}
	return rbd_acl_object_init(backend, found ? name : "");
}

static void rbd_acl_object_deinit(struct acl_object *aclobj)
{
	if (array_is_created(&aclobj->rights))
		array_free(&aclobj->rights);
	if (aclobj->rights_pool != NULL)
		pool_unref(&aclobj->rights_pool);
	i_free(aclobj->name);
	i_free(aclobj);
}

static int rbd_acl_object_refresh_cache(struct acl_object *aclobj)
{
	struct acl_backend *backend = aclobj->backend;
	const union rbd_acl_validity *old;
	union rbd_acl_validity validity;
	struct rbd_acl_snapshot *snapshot;
	struct rbd_acl_add_context ctx;
	const char *key;

	if (rbd_acl_snapshot_get(backend, &snapshot) < 0)
		return -1;
	old = acl_cache_get_validity(backend->cache, aclobj->name);
	if (old != NULL && old->generation == snapshot->generation)
		return 0;

	if (!array_is_created(&aclobj->rights)) {
		aclobj->rights_pool = pool_alloconly_create("acl rights", 256);
		i_array_init(&aclobj->rights, 16);
	} else {
		array_clear(&aclobj->rights);
		p_clear(aclobj->rights_pool);
	}
	/* Global ACLs are configuration, the same file on every node
	   (vfile:<file>; vfile's older global directory is not read). */
	if (backend->global_file != NULL)
		acl_object_add_global_acls(aclobj);
	/* A mailbox not (or no longer) listed has no ACL of its own. */
	if (!backend->globals_only &&
	    (key = rbd_acl_object_key(snapshot, aclobj->name)) != NULL) {
		ctx.aclobj = aclobj;
		ctx.key_len = strlen(key);
		rbd_acl_foreach(snapshot, key, rbd_acl_add_right, &ctx);
	}
	acl_rights_sort(aclobj);
	acl_object_rebuild_cache(aclobj);
	i_zero(&validity);
	validity.generation = snapshot->generation;
	acl_cache_set_validity(backend->cache, aclobj->name, &validity);
	return 0;
}

/* The dictionary key of one side (rights or negative rights) of an
   identifier's entry. */
static const char *rbd_acl_right_key(const char *object_key,
                                     const struct acl_rights *rights, bool neg)
{
	string_t *key = t_str_new(64);

	str_printfa(key, "%s%s/%s", RBD_ACL_KEY_PREFIX, object_key,
	            neg ? "-" : "");
	acl_rights_write_id(key, rights);
	return str_c(key);
}

/* The value the snapshot has for the full key, or NULL. */
static const char *rbd_acl_value(const struct rbd_acl_snapshot *snapshot,
                                 const char *full_key)
{
	const struct rbd_dict_entry *entry;
	const char *key = full_key + strlen(RBD_ACL_KEY_PREFIX);

	array_foreach(&snapshot->entries, entry)
	{
		if (strcmp(entry->key, key) == 0)
			return entry->value;
	}
	return NULL;
}

/* The change of one side of the identifier's entry, guarded by the value
   it was computed from; FALSE if the side stays as it is. */
static bool rbd_acl_modify(const struct rbd_acl_snapshot *snapshot,
                           const char *object_key,
                           const struct acl_rights_update *update, bool neg,
                           struct rbd_dict_change *change_r)
{
	const char *key = rbd_acl_right_key(object_key, &update->rights, neg);
	const char *old = rbd_acl_value(snapshot, key), *error = NULL;
	const char *const *names = NULL;
	string_t *value;

	if (old != NULL) {
		names = acl_right_names_parse(pool_datastack_create(), old,
		                              &error);
	}
	if (!acl_right_names_modify(
	            pool_datastack_create(), &names,
	            neg ? update->rights.neg_rights : update->rights.rights,
	            neg ? update->neg_modify_mode : update->modify_mode))
		return FALSE;
	i_zero(change_r);
	change_r->key = key;
	change_r->expected = old;
	change_r->guarded = 1;
	if (names == NULL || names[0] == NULL) {
		change_r->op = RBD_DICT_UNSET;
		return old != NULL;
	}
	value = t_str_new(64);
	acl_right_names_write(value, names);
	change_r->op = RBD_DICT_SET;
	change_r->value = str_c(value);
	return TRUE;
}

static void rbd_acl_lookup_dict_rebuild(struct acl_backend *backend)
{
	struct acl_user *auser =
	        ACL_USER_CONTEXT(mailbox_list_get_user(backend->list));

	/* Who may see which user's mailboxes (acl_shared_dict), as vfile
	   rebuilds it after such a change. */
	if (auser != NULL)
		(void)acl_lookup_dict_rebuild(auser->acl_lookup_dict);
}

static int rbd_acl_object_update(struct acl_object *aclobj,
                                 const struct acl_rights_update *update)
{
	struct acl_backend *backend = aclobj->backend;
	struct rbd_acl_list *alist = rbd_acl_list(backend);
	struct rbd_acl_snapshot *snapshot;
	struct rbd_dict_change changes[2];
	struct rbd_dict_store *dict;
	struct rbd_error err;
	const char *key;
	unsigned int count = 0;
	int inc_missed;

	if (rbd_list_get_dict(backend->list, &dict) < 0) {
		rbd_acl_set_error(backend->list, NULL);
		return -1;
	}
	/* Computed from what RADOS has now, not from the command's snapshot:
	   the op is guarded by those values. */
	rbd_acl_snapshot_clear(&alist->snapshot);
	if (rbd_acl_snapshot_get(backend, &snapshot) < 0)
		return -1;
	if ((key = rbd_acl_object_key(snapshot, aclobj->name)) == NULL) {
		e_error(backend->list->ns->user->event,
		        "acl: rbd: can't update the ACL of %s: no such mailbox",
		        aclobj->name);
		return -1;
	}
	if (rbd_acl_modify(snapshot, key, update, FALSE, &changes[count]))
		count++;
	if (rbd_acl_modify(snapshot, key, update, TRUE, &changes[count]))
		count++;
	if (count == 0)
		return 0;
	rbd_acl_snapshot_clear(&alist->snapshot);
	acl_cache_flush(backend->cache, aclobj->name);
	if (rbd_dict_store_commit(dict, changes, count, &inc_missed, &err) !=
	    RBD_OK) {
		/* RBD_ERR_CONFLICT: another process changed this entry
		   since it was read; the client may try again. */
		rbd_acl_set_error(backend->list, &err);
		return -1;
	}
	if (acl_rights_has_nonowner_lookup_changes(&update->rights))
		rbd_acl_lookup_dict_rebuild(backend);
	return 0;
}

static int rbd_acl_object_last_changed(struct acl_object *aclobj ATTR_UNUSED,
                                       time_t *last_changed_r)
{
	/* Not recorded. */
	*last_changed_r = 0;
	return 0;
}

struct rbd_acl_nonowner_context {
	struct rbd_acl_nonowner_iter *iter;
	const char *name;
	size_t key_len;
};

static bool rbd_acl_nonowner_check(const struct rbd_dict_entry *entry,
                                   void *context)
{
	struct rbd_acl_nonowner_context *ctx = context;
	struct acl_rights rights;
	const char *error = NULL;

	if (rbd_acl_parse_entry(entry, ctx->key_len, ctx->iter->pool, &rights,
	                        &error) < 0 ||
	    !acl_rights_has_nonowner_lookup_changes(&rights))
		return TRUE;
	array_push_back(&ctx->iter->names, &ctx->name);
	return FALSE;
}

/* The mailboxes whose ACL gives someone else than the owner the lookup
   right: what a non-owner's LIST shows at most (acl-mailbox-list.c) and
   what acl_shared_dict is built from. */
static struct acl_mailbox_list_context *
rbd_acl_nonowner_iter_init(struct acl_backend *backend)
{
	struct rbd_acl_nonowner_iter *iter;
	struct rbd_acl_nonowner_context ctx;
	struct rbd_acl_snapshot *snapshot;
	pool_t pool;
	size_t i;

	pool = pool_alloconly_create("rbd acl nonowner iter", 512);
	iter = p_new(pool, struct rbd_acl_nonowner_iter, 1);
	iter->pool = pool;
	iter->ctx.backend = backend;
	p_array_init(&iter->names, pool, 8);
	if (rbd_acl_snapshot_get(backend, &snapshot) < 0) {
		iter->ctx.failed = TRUE;
		return &iter->ctx;
	}
	ctx.iter = iter;
	for (i = 0; i < snapshot->mailboxes->count; i++) {
		const struct rbd_mailbox_entry *entry =
		        &snapshot->mailboxes->entries[i];

		if (entry->nonexistent)
			continue;
		ctx.name = p_strdup(pool, entry->name);
		ctx.key_len = strlen(guid_128_to_string(entry->guid));
		rbd_acl_foreach(snapshot, guid_128_to_string(entry->guid),
		                rbd_acl_nonowner_check, &ctx);
	}
	return &iter->ctx;
}

static bool rbd_acl_nonowner_iter_next(struct acl_mailbox_list_context *_ctx,
                                       const char **name_r)
{
	struct rbd_acl_nonowner_iter *iter =
	        container_of(_ctx, struct rbd_acl_nonowner_iter, ctx);

	if (iter->ctx.failed || iter->next >= array_count(&iter->names))
		return FALSE;
	*name_r = array_idx_elem(&iter->names, iter->next++);
	return TRUE;
}

static int rbd_acl_nonowner_iter_deinit(struct acl_mailbox_list_context *_ctx)
{
	struct rbd_acl_nonowner_iter *iter =
	        container_of(_ctx, struct rbd_acl_nonowner_iter, ctx);
	int ret = iter->ctx.failed ? -1 : 0;

	pool_unref(&iter->pool);
	return ret;
}

static int
rbd_acl_nonowner_lookups_rebuild(struct acl_backend *backend ATTR_UNUSED)
{
	/* Computed from RADOS each time: nothing kept to rebuild. */
	return 0;
}

static void rbd_acl_list_deinit(struct mailbox_list *list)
{
	struct rbd_acl_list *alist = RBD_ACL_LIST_CONTEXT(list);

	rbd_acl_snapshot_clear(&alist->snapshot);
	alist->module_ctx.super.deinit(list);
}

static void rbd_acl_mailbox_list_created(struct mailbox_list *list)
{
	struct mailbox_list_vfuncs *v = list->vlast;
	struct rbd_acl_list *alist;

	if (strcmp(list->name, RBD_LIST_NAME) != 0)
		return;
	alist = p_new(list->pool, struct rbd_acl_list, 1);
	alist->module_ctx.super = *v;
	list->vlast = &alist->module_ctx.super;
	v->deinit = rbd_acl_list_deinit;
	MODULE_CONTEXT_SET(list, rbd_acl_list_module, alist);
}

/* The acl plugin makes a namespace's backend once the namespace has its
   storage, in a hook of this name that runs before this one (hooks run in
   the order of the modules' names). */
/* Everything about per-mailbox ACLs; the rest stays vfile's. */
static const struct acl_backend_vfuncs rbd_acl_backend_vfuncs = {
        .nonowner_lookups_iter_init = rbd_acl_nonowner_iter_init,
        .nonowner_lookups_iter_next = rbd_acl_nonowner_iter_next,
        .nonowner_lookups_iter_deinit = rbd_acl_nonowner_iter_deinit,
        .nonowner_lookups_rebuild = rbd_acl_nonowner_lookups_rebuild,
        .object_init = rbd_acl_object_init,
        .object_init_parent = rbd_acl_object_init_parent,
        .object_deinit = rbd_acl_object_deinit,
        .object_refresh_cache = rbd_acl_object_refresh_cache,
        .object_update = rbd_acl_object_update,
        .last_changed = rbd_acl_object_last_changed,
        .object_list_init = acl_default_object_list_init,
        .object_list_next = acl_default_object_list_next,
        .object_list_deinit = acl_default_object_list_deinit,
};

static void rbd_acl_namespace_storage_added(struct mail_namespace *ns)
{
	struct acl_backend_vfuncs v = rbd_acl_backend_vfuncs;
	struct rbd_acl_list *alist = RBD_ACL_LIST_CONTEXT(ns->list);
	struct acl_mailbox_list *acl_list = ACL_LIST_CONTEXT(ns->list);
	struct acl_backend *backend;

	if (alist == NULL || alist->backend != NULL || acl_list == NULL ||
	    (backend = acl_list->rights.backend) == NULL)
		return;
	alist->backend = backend;
	/* vfile's own: its settings, global file and rights cache. */
	v.alloc = backend->v.alloc;
	v.init = backend->v.init;
	v.deinit = backend->v.deinit;
	backend->v = v;
}

static struct mail_storage_hooks rbd_acl_mail_storage_hooks = {
        .mailbox_list_created = rbd_acl_mailbox_list_created,
        .mail_namespace_storage_added = rbd_acl_namespace_storage_added,
};

void rbd_acl_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &rbd_acl_mail_storage_hooks);
}

void rbd_acl_plugin_deinit(void)
{
	mail_storage_hooks_remove(&rbd_acl_mail_storage_hooks);
}
