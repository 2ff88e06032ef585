/* The mail users of this process, by name, for modules that are handed a
   username and nothing else: Pigeonhole gives a Sieve storage driver only
   the username (and its settings), yet the Sieve storage on rbd
   (lib90_sieve_rbd_plugin.so) must reach the RADOS namespace and cluster
   of that user's rbd storage. LMTP and ManageSieve create the mail user
   before they set up Sieve, and free it after. */

#include "lib.h"
#include "array.h"
#include "mail-namespace.h"
#include "mail-storage-hooks.h"
#include "rbd-mail-storage.h"

#define RBD_USERS_CONTEXT(obj) MODULE_CONTEXT_REQUIRE(obj, rbd_users_module)

struct rbd_users_user {
	union mail_user_module_context module_ctx;
};

static MODULE_CONTEXT_DEFINE_INIT(rbd_users_module, &mail_user_module_register);
static ARRAY(struct mail_user *) rbd_users;

static void rbd_users_user_deinit(struct mail_user *user)
{
	struct rbd_users_user *ruser = RBD_USERS_CONTEXT(user);
	struct mail_user *const *users;
	unsigned int i, count;

	users = array_get(&rbd_users, &count);
	for (i = 0; i < count; i++) {
		if (users[i] == user) {
			array_delete(&rbd_users, i, 1);
			break;
		}
	}
	ruser->module_ctx.super.deinit(user);
}

static void rbd_users_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct rbd_users_user *ruser;

	ruser = p_new(user->pool, struct rbd_users_user, 1);
	ruser->module_ctx.super = *v;
	user->vlast = &ruser->module_ctx.super;
	v->deinit = rbd_users_user_deinit;
	MODULE_CONTEXT_SET(user, rbd_users_module, ruser);
	array_push_back(&rbd_users, &user);
}

static struct mail_storage_hooks rbd_users_hooks = {
        .mail_user_created = rbd_users_mail_user_created,
};

int rbd_users_get_dict(const char *username, struct rbd_dict_store **dict_r,
                       const char **error_r)
{
	struct mail_user *const *users;
	struct mail_namespace *ns;
	enum mail_error error;
	unsigned int count;

	users = array_get(&rbd_users, &count);
	/* The newest first: a process serves one user at a time. */
	while (count > 0 && strcmp(users[count - 1]->username, username) != 0)
		count--;
	if (count == 0) {
		*error_r = t_strdup_printf("no mail user %s in this process",
		                           username);
		return -1;
	}
	ns = mail_namespace_find_inbox(users[count - 1]->namespaces);
	if (ns == NULL || strcmp(ns->list->name, RBD_LIST_NAME) != 0) {
		*error_r = t_strdup_printf(
		        "the INBOX namespace of %s is not on rbd", username);
		return -1;
	}
	if (rbd_list_get_dict(ns->list, dict_r) < 0) {
		*error_r = mailbox_list_get_last_error(ns->list, &error);
		return -1;
	}
	return 0;
}

void rbd_users_register(struct module *module)
{
	i_array_init(&rbd_users, 4);
	mail_storage_hooks_add(module, &rbd_users_hooks);
}

void rbd_users_unregister(void)
{
	mail_storage_hooks_remove(&rbd_users_hooks);
	array_free(&rbd_users);
}
