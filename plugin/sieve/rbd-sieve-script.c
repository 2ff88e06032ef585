/* A Sieve script of the "rbd" storage: its text is one dictionary value,
   read whole when the script is opened (ManageSieve's size limit, 1 MB by
   default, bounds it). Scripts are compiled at each use: there is no
   binary cache, whose files would be node-local again. */

#include "lib.h"
#include "istream.h"
#include "rbd-storage.h"
#include "rbd-sieve-storage.h"

static const char *rbd_sieve_script_key(const char *name)
{
	return t_strconcat(RBD_SIEVE_SCRIPT_PREFIX, name, NULL);
}

struct rbd_sieve_script *
rbd_sieve_script_alloc(struct rbd_sieve_storage *rstorage, const char *name,
                       const char *data, size_t size)
{
	struct rbd_sieve_script *rscript;
	pool_t pool;

	pool = pool_alloconly_create("rbd sieve script", 1024);
	rscript = p_new(pool, struct rbd_sieve_script, 1);
	rscript->script = rbd_sieve_script;
	rscript->script.pool = pool;
	sieve_script_init(&rscript->script, &rstorage->storage,
	                  &rbd_sieve_script,
	                  t_strconcat(RBD_SIEVE_DRIVER_NAME ":;name=", name,
	                              NULL),
	                  name);
	if (data != NULL) {
		rscript->data = p_strndup(pool, data, size);
		rscript->size = size;
	}
	return rscript;
}

static int rbd_sieve_script_open(struct sieve_script *script,
                                 enum sieve_error *error_r)
{
	struct rbd_sieve_script *rscript = RBD_SIEVE_SCRIPT(script);
	int ret;

	if (rscript->data != NULL)
		return 0;
	ret = rbd_sieve_lookup(RBD_SIEVE_STORAGE(script->storage),
	                       script->pool, rbd_sieve_script_key(script->name),
	                       &rscript->data, &rscript->size);
	if (ret == 0) {
		sieve_script_set_error(script, SIEVE_ERROR_NOT_FOUND,
		                       "Sieve script `%s' not found",
		                       script->name);
	}
	if (ret <= 0) {
		*error_r = script->storage->error_code;
		return -1;
	}
	return 0;
}

static int rbd_sieve_script_get_stream(struct sieve_script *script,
                                       struct istream **stream_r,
                                       enum sieve_error *error_r ATTR_UNUSED)
{
	struct rbd_sieve_script *rscript = RBD_SIEVE_SCRIPT(script);

	*stream_r = i_stream_create_from_data(rscript->data, rscript->size);
	return 0;
}

static int rbd_sieve_script_get_size(const struct sieve_script *script,
                                     uoff_t *size_r)
{
	const struct rbd_sieve_script *rscript =
	        (const struct rbd_sieve_script *)script;

	*size_r = rscript->size;
	return 1;
}

/* 1 if the active name is `name`, 0 if not, -1 on error. */
static int rbd_sieve_script_check_active(struct sieve_script *script)
{
	const char *active;
	size_t size;
	int ret;

	ret = rbd_sieve_lookup(RBD_SIEVE_STORAGE(script->storage),
	                       pool_datastack_create(), RBD_SIEVE_ACTIVE_KEY,
	                       &active, &size);
	if (ret <= 0)
		return ret;
	return strcmp(active, script->name) == 0 ? 1 : 0;
}

static int rbd_sieve_script_is_active(struct sieve_script *script)
{
	int ret;

	T_BEGIN {
		ret = rbd_sieve_script_check_active(script);
	} T_END;
	return ret;
}

/* The script's text must still be what this session read: a script
   deleted or replaced meanwhile on another node fails the commit rather
   than being activated or renamed blind. */
static int rbd_sieve_script_activate(struct sieve_script *script)
{
	struct rbd_sieve_script *rscript = RBD_SIEVE_SCRIPT(script);
	struct rbd_dict_change changes[2];
	int ret;

	i_zero(&changes);
	T_BEGIN {
		changes[0].op = RBD_DICT_SET;
		changes[0].key = rbd_sieve_script_key(script->name);
		changes[0].value = rscript->data;
		changes[0].guarded = 1;
		changes[0].expected = rscript->data;
		changes[1].op = RBD_DICT_SET;
		changes[1].key = RBD_SIEVE_ACTIVE_KEY;
		changes[1].value = script->name;
		ret = rbd_sieve_commit(RBD_SIEVE_STORAGE(script->storage),
		                       changes, N_ELEMENTS(changes),
		                       "The script changed meanwhile");
	} T_END;
	return ret;
}

static int rbd_sieve_script_do_rename(struct sieve_script *script,
                                      const char *newname)
{
	struct rbd_sieve_script *rscript = RBD_SIEVE_SCRIPT(script);
	struct rbd_dict_change changes[3];
	unsigned int count = 0;
	int active;

	active = rbd_sieve_script_check_active(script);
	if (active < 0)
		return -1;
	i_zero(&changes);
	changes[count].op = RBD_DICT_SET;
	changes[count].key = rbd_sieve_script_key(newname);
	changes[count].value = rscript->data;
	changes[count].guarded = 1; /* expected: missing */
	count++;
	changes[count].op = RBD_DICT_UNSET;
	changes[count].key = rbd_sieve_script_key(script->name);
	changes[count].guarded = 1;
	changes[count].expected = rscript->data;
	count++;
	if (active > 0) {
		changes[count].op = RBD_DICT_SET;
		changes[count].key = RBD_SIEVE_ACTIVE_KEY;
		changes[count].value = newname;
		changes[count].guarded = 1;
		changes[count].expected = script->name;
		count++;
	}
	return rbd_sieve_commit(RBD_SIEVE_STORAGE(script->storage), changes,
	                        count,
	                        "A sieve script with that name already exists.");
}

static int rbd_sieve_script_rename(struct sieve_script *script,
                                   const char *newname)
{
	int ret;

	T_BEGIN {
		ret = rbd_sieve_script_do_rename(script, newname);
	} T_END;
	if (ret == 0)
		script->name = p_strdup(script->pool, newname);
	return ret;
}

static int rbd_sieve_script_delete(struct sieve_script *script)
{
	struct rbd_dict_change change;
	int ret;

	i_zero(&change);
	T_BEGIN {
		change.op = RBD_DICT_UNSET;
		change.key = rbd_sieve_script_key(script->name);
		ret = rbd_sieve_commit(RBD_SIEVE_STORAGE(script->storage),
		                       &change, 1, NULL);
	} T_END;
	return ret;
}

static bool rbd_sieve_script_equals(const struct sieve_script *script,
                                    const struct sieve_script *other)
{
	return script->storage == other->storage &&
	       strcmp(script->name, other->name) == 0;
}

const struct sieve_script rbd_sieve_script = {
        .driver_name = RBD_SIEVE_DRIVER_NAME,
        .v =
                {
                        .open = rbd_sieve_script_open,
                        .get_stream = rbd_sieve_script_get_stream,
                        .rename = rbd_sieve_script_rename,
                        .delete = rbd_sieve_script_delete,
                        .is_active = rbd_sieve_script_is_active,
                        .activate = rbd_sieve_script_activate,
                        .get_size = rbd_sieve_script_get_size,
                        .equals = rbd_sieve_script_equals,
                },
};
