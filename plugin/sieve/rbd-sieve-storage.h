#ifndef RBD_SIEVE_STORAGE_H
#define RBD_SIEVE_STORAGE_H

/* The Sieve storage "rbd": a user's Sieve scripts in the dictionary object
   `d` of the user's RADOS namespace, so that a script uploaded through
   ManageSieve on one node is the one LMTP runs on every node (a file
   storage under mail_home is node-local on rbd). Keys:

     rbd.sieve/script/<name>  = the script's text
     rbd.sieve/active         = the name of the active script

   Every change is one dictionary commit, which is one RADOS op: a rename
   moves the script and, if it was active, the active name together. */

#include "sieve-storage-private.h"
#include "sieve-script-private.h"

#define RBD_SIEVE_DRIVER_NAME "rbd"
#define RBD_SIEVE_SCRIPT_PREFIX "rbd.sieve/script/"
#define RBD_SIEVE_ACTIVE_KEY "rbd.sieve/active"

struct rbd_dict_store;

/* What this module calls in lib20_rbd_plugin.so, weak: Pigeonhole also loads
   its plugins where no mail plugin is (the managesieve-login capability
   dump), and the module must load there. rbd_sieve_storage_init() refuses
   to work without them. */
#pragma weak rbd_users_get_dict
#pragma weak rbd_dict_store_lookup
#pragma weak rbd_dict_store_list
#pragma weak rbd_dict_store_commit
#pragma weak rbd_dict_entries_free
#pragma weak rbd_buffer_free

struct rbd_sieve_storage {
	struct sieve_storage storage;
	/* The user's dictionary; its mailbox list owns it. */
	struct rbd_dict_store *dict;
};

struct rbd_sieve_script {
	struct sieve_script script;
	/* The text, read when opened (or the upload of a save). */
	const char *data;
	size_t size;
};

extern const struct sieve_storage rbd_sieve_storage;
extern const struct sieve_script rbd_sieve_script;

#define RBD_SIEVE_STORAGE(s) \
	(container_of(s, struct rbd_sieve_storage, storage))
#define RBD_SIEVE_SCRIPT(s) (container_of(s, struct rbd_sieve_script, script))

/* rbd-sieve-storage.c */
/* Reads `key`: 1 with *value_r (allocated from `pool`), 0 when it does not
   exist, -1 with the storage error set. */
int rbd_sieve_lookup(struct rbd_sieve_storage *rstorage, pool_t pool,
                     const char *key, const char **value_r, size_t *size_r);
/* Applies `changes` as one commit; -1 with the storage error set (a guard
   that failed is SIEVE_ERROR_EXISTS with `conflict` as its message). */
struct rbd_dict_change;
int rbd_sieve_commit(struct rbd_sieve_storage *rstorage,
                     const struct rbd_dict_change *changes, size_t count,
                     const char *conflict);

/* rbd-sieve-script.c */
/* A script named `name`; with `data`, it has that text and is not read
   from the dictionary when opened (a save's upload). */
struct rbd_sieve_script *
rbd_sieve_script_alloc(struct rbd_sieve_storage *rstorage, const char *name,
                       const char *data, size_t size);

#endif
