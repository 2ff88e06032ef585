/* The Sieve storage "rbd" (rbd-sieve-storage.h): the storage, its active
   script, listing and saving. Configured as `sieve = rbd:` with
   `sieve_plugins = sieve_rbd`, in LMTP (running scripts) and ManageSieve
   (managing them); it needs the rbd mail storage in mail_plugins, whose
   user it finds by name (rbd_users_get_dict). */

#include "lib.h"
#include "istream.h"
#include "str.h"
#include "rbd-storage.h"
#include "rbd-mail-storage.h"
#include "rbd-sieve-storage.h"

/* Script names read per dictionary call when listing. */
#define RBD_SIEVE_LIST_PAGE 100

struct rbd_sieve_entry {
	const char *name;
	size_t size;
};
ARRAY_DEFINE_TYPE(rbd_sieve_entry, struct rbd_sieve_entry);

struct rbd_sieve_list_context {
	struct sieve_storage_list_context context;
	pool_t pool;
	ARRAY_TYPE(rbd_sieve_entry) scripts;
	const char *active;
	unsigned int next;
};

struct rbd_sieve_save_context {
	struct sieve_storage_save_context context;
	string_t *data;
};

int rbd_sieve_lookup(struct rbd_sieve_storage *rstorage, pool_t pool,
                     const char *key, const char **value_r, size_t *size_r)
{
	struct rbd_buffer *value;
	struct rbd_error err;

	switch (rbd_dict_store_lookup(rstorage->dict, key, &value, &err)) {
	case RBD_OK:
		*value_r = p_strndup(pool, value->data, value->size);
		*size_r = value->size;
		rbd_buffer_free(&value);
		return 1;
	case RBD_ERR_NOT_FOUND:
		return 0;
	default:
		sieve_storage_set_critical(&rstorage->storage, "rbd: read %s: %s",
		                           key, err.message);
		return -1;
	}
}

int rbd_sieve_commit(struct rbd_sieve_storage *rstorage,
                     const struct rbd_dict_change *changes, size_t count,
                     const char *conflict)
{
	struct rbd_error err;
	int inc_missed;

	switch (rbd_dict_store_commit(rstorage->dict, changes, count,
	                              &inc_missed, &err)) {
	case RBD_OK:
		return 0;
	case RBD_ERR_CONFLICT:
		if (conflict != NULL) {
			sieve_storage_set_error(&rstorage->storage,
			                        SIEVE_ERROR_EXISTS, "%s",
			                        conflict);
			return -1;
		}
		/* fall through */
	default:
		sieve_storage_set_critical(&rstorage->storage, "rbd: %s",
		                           err.message);
		return -1;
	}
}

static struct sieve_storage *rbd_sieve_storage_alloc(void)
{
	struct rbd_sieve_storage *rstorage;
	pool_t pool;

	pool = pool_alloconly_create("rbd sieve storage", 512);
	rstorage = p_new(pool, struct rbd_sieve_storage, 1);
	rstorage->storage = rbd_sieve_storage;
	rstorage->storage.pool = pool;
	return &rstorage->storage;
}

static int rbd_sieve_storage_init(struct sieve_storage *storage,
                                  const char *const *options,
                                  enum sieve_error *error_r)
{
	struct rbd_sieve_storage *rstorage = RBD_SIEVE_STORAGE(storage);
	const char *error;

	if (options != NULL && *options != NULL) {
		sieve_storage_set_critical(storage,
		                           "rbd: unknown option %s in sieve=%s",
		                           *options, storage->location);
		*error_r = SIEVE_ERROR_TEMP_FAILURE;
		return -1;
	}
	if (rbd_users_get_dict == NULL)
		error = "the rbd mail plugin is not loaded";
	else if (rbd_users_get_dict(storage->svinst->username,
	                            &rstorage->dict, &error) == 0)
		error = NULL;
	if (error != NULL) {
		sieve_storage_set_critical(
		        storage,
		        "rbd: Sieve scripts of %s: %s (sieve = rbd: needs "
		        "mail_location = rbd: and the rbd plugin in "
		        "mail_plugins)",
		        storage->svinst->username, error);
		*error_r = SIEVE_ERROR_TEMP_FAILURE;
		return -1;
	}
	return 0;
}

static int rbd_sieve_storage_get_last_change(struct sieve_storage *storage
                                             ATTR_UNUSED,
                                             time_t *last_change_r)
{
	/* Not kept: nothing on rbd synchronizes scripts by time. */
	*last_change_r = 0;
	return 0;
}

static struct sieve_script *
rbd_sieve_storage_get_script(struct sieve_storage *storage, const char *name)
{
	struct rbd_sieve_script *rscript;

	rscript = rbd_sieve_script_alloc(RBD_SIEVE_STORAGE(storage), name,
	                                 NULL, 0);
	return &rscript->script;
}

/* ---- the active script ---- */

static int rbd_sieve_storage_active_script_get_name(struct sieve_storage *storage,
                                                    const char **name_r)
{
	size_t size;

	*name_r = NULL;
	return rbd_sieve_lookup(RBD_SIEVE_STORAGE(storage),
	                        pool_datastack_create(), RBD_SIEVE_ACTIVE_KEY,
	                        name_r, &size);
}

static struct sieve_script *
rbd_sieve_storage_active_script_open(struct sieve_storage *storage)
{
	struct sieve_script *script;
	const char *name;
	int ret;

	ret = rbd_sieve_storage_active_script_get_name(storage, &name);
	if (ret <= 0) {
		if (ret == 0) {
			sieve_storage_set_error(storage, SIEVE_ERROR_NOT_FOUND,
			                        "No active Sieve script");
		}
		return NULL;
	}
	script = rbd_sieve_storage_get_script(storage, name);
	if (sieve_script_open(script, NULL) < 0) {
		sieve_script_unref(&script);
		return NULL;
	}
	return script;
}

static int rbd_sieve_storage_active_script_get_last_change(
        struct sieve_storage *storage, time_t *last_change_r)
{
	return rbd_sieve_storage_get_last_change(storage, last_change_r);
}

/* 1 when a script was active, 0 when none was. */
static int rbd_sieve_storage_deactivate(struct sieve_storage *storage)
{
	struct rbd_dict_change change;
	const char *name;
	int ret;

	T_BEGIN {
		ret = rbd_sieve_storage_active_script_get_name(storage, &name);
		if (ret > 0) {
			i_zero(&change);
			change.op = RBD_DICT_UNSET;
			change.key = RBD_SIEVE_ACTIVE_KEY;
			if (rbd_sieve_commit(RBD_SIEVE_STORAGE(storage),
			                     &change, 1, NULL) < 0)
				ret = -1;
		}
	} T_END;
	return ret;
}

/* ---- sequences: the active script alone ---- */

struct rbd_sieve_script_sequence {
	struct sieve_script_sequence seq;
	bool done;
};

static struct sieve_script_sequence *
rbd_sieve_storage_get_script_sequence(struct sieve_storage *storage,
                                      enum sieve_error *error_r ATTR_UNUSED)
{
	struct rbd_sieve_script_sequence *rseq;

	rseq = i_new(struct rbd_sieve_script_sequence, 1);
	sieve_script_sequence_init(&rseq->seq, storage);
	return &rseq->seq;
}

static struct sieve_script *
rbd_sieve_script_sequence_next(struct sieve_script_sequence *seq,
                               enum sieve_error *error_r)
{
	struct rbd_sieve_script_sequence *rseq =
	        container_of(seq, struct rbd_sieve_script_sequence, seq);
	struct sieve_script *script;

	if (rseq->done)
		return NULL;
	rseq->done = TRUE;
	script = rbd_sieve_storage_active_script_open(seq->storage);
	if (script == NULL && error_r != NULL)
		*error_r = seq->storage->error_code;
	return script;
}

static void rbd_sieve_script_sequence_destroy(struct sieve_script_sequence *seq)
{
	struct rbd_sieve_script_sequence *rseq =
	        container_of(seq, struct rbd_sieve_script_sequence, seq);

	i_free(rseq);
}

/* ---- listing: the names, read page by page ---- */

/* Every script's name and size, in name order. */
static int rbd_sieve_read_scripts(struct rbd_sieve_storage *rstorage,
                                  pool_t pool,
                                  ARRAY_TYPE(rbd_sieve_entry) *scripts)
{
	const size_t prefix_len = strlen(RBD_SIEVE_SCRIPT_PREFIX);
	const char *after = "";
	struct rbd_sieve_entry *entry;
	struct rbd_dict_entries *entries;
	struct rbd_error err;
	bool more = TRUE;
	size_t i;

	while (more) {
		if (rbd_dict_store_list(rstorage->dict, RBD_SIEVE_SCRIPT_PREFIX,
		                        after, RBD_SIEVE_LIST_PAGE, &entries,
		                        &err) != RBD_OK) {
			sieve_storage_set_critical(&rstorage->storage,
			                           "rbd: list scripts: %s",
			                           err.message);
			return -1;
		}
		for (i = 0; i < entries->count; i++) {
			entry = array_append_space(scripts);
			entry->name = p_strdup(pool, entries->entries[i].key +
			                                     prefix_len);
			entry->size = strlen(entries->entries[i].value);
		}
		if (entries->count > 0) {
			after = t_strdup(
			        entries->entries[entries->count - 1].key);
		}
		more = entries->more != 0 && entries->count > 0;
		rbd_dict_entries_free(&entries);
	}
	return 0;
}

static int rbd_sieve_list_read(struct rbd_sieve_list_context *lctx)
{
	struct rbd_sieve_storage *rstorage =
	        RBD_SIEVE_STORAGE(lctx->context.storage);
	size_t size;

	if (rbd_sieve_read_scripts(rstorage, lctx->pool, &lctx->scripts) < 0)
		return -1;
	if (rbd_sieve_lookup(rstorage, lctx->pool, RBD_SIEVE_ACTIVE_KEY,
	                     &lctx->active, &size) < 0)
		return -1;
	return 0;
}

static struct sieve_storage_list_context *
rbd_sieve_storage_list_init(struct sieve_storage *storage)
{
	struct rbd_sieve_list_context *lctx;
	pool_t pool;
	int ret;

	pool = pool_alloconly_create("rbd sieve list", 1024);
	lctx = p_new(pool, struct rbd_sieve_list_context, 1);
	lctx->pool = pool;
	lctx->context.storage = storage;
	p_array_init(&lctx->scripts, pool, 16);
	T_BEGIN {
		ret = rbd_sieve_list_read(lctx);
	} T_END;
	if (ret < 0) {
		pool_unref(&pool);
		return NULL;
	}
	return &lctx->context;
}

static const char *
rbd_sieve_storage_list_next(struct sieve_storage_list_context *context,
                            bool *active_r)
{
	struct rbd_sieve_list_context *lctx =
	        container_of(context, struct rbd_sieve_list_context, context);
	const struct rbd_sieve_entry *entry;

	if (lctx->next >= array_count(&lctx->scripts))
		return NULL;
	entry = array_idx(&lctx->scripts, lctx->next);
	lctx->next++;
	*active_r = lctx->active != NULL &&
	            strcmp(entry->name, lctx->active) == 0;
	return entry->name;
}

static int
rbd_sieve_storage_list_deinit(struct sieve_storage_list_context *context)
{
	struct rbd_sieve_list_context *lctx =
	        container_of(context, struct rbd_sieve_list_context, context);

	pool_unref(&lctx->pool);
	return 0;
}

/* ---- saving: the upload is kept in memory and committed in one op ---- */

static struct sieve_storage_save_context *
rbd_sieve_storage_save_alloc(struct sieve_storage *storage ATTR_UNUSED)
{
	struct rbd_sieve_save_context *rsctx;
	pool_t pool;

	pool = pool_alloconly_create("rbd sieve save", 4096);
	rsctx = p_new(pool, struct rbd_sieve_save_context, 1);
	rsctx->context.pool = pool;
	rsctx->data = str_new(pool, 4096);
	return &rsctx->context;
}

static int rbd_sieve_storage_save_init(struct sieve_storage_save_context *sctx,
                                       const char *scriptname,
                                       struct istream *input)
{
	sctx->scriptname = p_strdup(sctx->pool, scriptname);
	sctx->input = input;
	return 0;
}

/* Reads what the input has so far into the upload. */
static int rbd_sieve_read_input(struct sieve_storage *storage,
                                struct istream *input, string_t *data)
{
	const unsigned char *bytes;
	size_t size;

	while (i_stream_read_more(input, &bytes, &size) > 0) {
		str_append_data(data, bytes, size);
		i_stream_skip(input, size);
	}
	if (input->stream_errno != 0) {
		sieve_storage_set_critical(storage, "save: read(%s) failed: %s",
		                           i_stream_get_name(input),
		                           i_stream_get_error(input));
		return -1;
	}
	return 0;
}

static int
rbd_sieve_storage_save_continue(struct sieve_storage_save_context *sctx)
{
	struct rbd_sieve_save_context *rsctx =
	        container_of(sctx, struct rbd_sieve_save_context, context);

	return rbd_sieve_read_input(sctx->storage, sctx->input, rsctx->data);
}

static int rbd_sieve_storage_save_finish(struct sieve_storage_save_context *sctx)
{
	return rbd_sieve_storage_save_continue(sctx);
}

static struct sieve_script *
rbd_sieve_storage_save_get_tempscript(struct sieve_storage_save_context *sctx)
{
	struct rbd_sieve_save_context *rsctx =
	        container_of(sctx, struct rbd_sieve_save_context, context);
	struct rbd_sieve_script *rscript;

	rscript = rbd_sieve_script_alloc(
	        RBD_SIEVE_STORAGE(sctx->storage),
	        sctx->scriptname != NULL ? sctx->scriptname : "(upload)",
	        str_c(rsctx->data), str_len(rsctx->data));
	if (sieve_script_open(&rscript->script, NULL) < 0) {
		struct sieve_script *script = &rscript->script;

		sieve_script_unref(&script);
		return NULL;
	}
	return &rscript->script;
}

static void
rbd_sieve_storage_save_cancel(struct sieve_storage_save_context *sctx
                              ATTR_UNUSED)
{
	/* Nothing was written. */
}

static int rbd_sieve_save(struct sieve_storage *storage, const char *name,
                          string_t *data)
{
	struct rbd_dict_change change;
	int ret;

	i_zero(&change);
	T_BEGIN {
		change.op = RBD_DICT_SET;
		change.key = t_strconcat(RBD_SIEVE_SCRIPT_PREFIX, name, NULL);
		change.value = str_c(data);
		ret = rbd_sieve_commit(RBD_SIEVE_STORAGE(storage), &change, 1,
		                       NULL);
	} T_END;
	return ret;
}

static int rbd_sieve_storage_save_commit(struct sieve_storage_save_context *sctx)
{
	struct rbd_sieve_save_context *rsctx =
	        container_of(sctx, struct rbd_sieve_save_context, context);

	return rbd_sieve_save(sctx->storage, sctx->scriptname, rsctx->data);
}

static int rbd_sieve_storage_save_as(struct sieve_storage *storage,
                                     struct istream *input, const char *name)
{
	string_t *data = t_str_new(4096);

	if (rbd_sieve_read_input(storage, input, data) < 0)
		return -1;
	return rbd_sieve_save(storage, name, data);
}

/* ---- quota: sieve_quota_max_scripts and sieve_quota_max_storage ---- */

static int rbd_sieve_storage_quota_havespace(struct sieve_storage *storage,
                                             const char *scriptname,
                                             size_t size,
                                             enum sieve_storage_quota *quota_r,
                                             uint64_t *limit_r)
{
	ARRAY_TYPE(rbd_sieve_entry) scripts;
	const struct rbd_sieve_entry *entry;
	uint64_t count = 1, total = size;

	t_array_init(&scripts, 16);
	if (rbd_sieve_read_scripts(RBD_SIEVE_STORAGE(storage),
	                           pool_datastack_create(), &scripts) < 0)
		return -1;
	/* A script replaced counts once, at its new size. */
	array_foreach(&scripts, entry) {
		if (strcmp(entry->name, scriptname) == 0)
			continue;
		count++;
		total += entry->size;
	}
	if (storage->max_scripts > 0 && count > storage->max_scripts) {
		*quota_r = SIEVE_STORAGE_QUOTA_MAXSCRIPTS;
		*limit_r = storage->max_scripts;
		return 0;
	}
	if (storage->max_storage > 0 && total > storage->max_storage) {
		*quota_r = SIEVE_STORAGE_QUOTA_MAXSTORAGE;
		*limit_r = storage->max_storage;
		return 0;
	}
	return 1;
}

const struct sieve_storage rbd_sieve_storage = {
        .driver_name = RBD_SIEVE_DRIVER_NAME,
        .version = 0,
        .allows_synchronization = FALSE,
        .v =
                {
                        .alloc = rbd_sieve_storage_alloc,
                        .init = rbd_sieve_storage_init,
                        .get_last_change = rbd_sieve_storage_get_last_change,
                        .get_script = rbd_sieve_storage_get_script,
                        .get_script_sequence =
                                rbd_sieve_storage_get_script_sequence,
                        .script_sequence_next = rbd_sieve_script_sequence_next,
                        .script_sequence_destroy =
                                rbd_sieve_script_sequence_destroy,
                        .active_script_get_name =
                                rbd_sieve_storage_active_script_get_name,
                        .active_script_open =
                                rbd_sieve_storage_active_script_open,
                        .deactivate = rbd_sieve_storage_deactivate,
                        .active_script_get_last_change =
                                rbd_sieve_storage_active_script_get_last_change,
                        .list_init = rbd_sieve_storage_list_init,
                        .list_next = rbd_sieve_storage_list_next,
                        .list_deinit = rbd_sieve_storage_list_deinit,
                        .save_alloc = rbd_sieve_storage_save_alloc,
                        .save_init = rbd_sieve_storage_save_init,
                        .save_continue = rbd_sieve_storage_save_continue,
                        .save_finish = rbd_sieve_storage_save_finish,
                        .save_get_tempscript =
                                rbd_sieve_storage_save_get_tempscript,
                        .save_cancel = rbd_sieve_storage_save_cancel,
                        .save_commit = rbd_sieve_storage_save_commit,
                        .save_as = rbd_sieve_storage_save_as,
                        .quota_havespace = rbd_sieve_storage_quota_havespace,
                },
};
