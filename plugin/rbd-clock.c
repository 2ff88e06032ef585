/* The command clock: when the client command that the process is serving
   began, for the core's one deadline per command (rbd_user_open,
   rbd_dict_store_open; doc/design.md, "Unknown outcomes and command
   deadlines").

   Dovecot's ioloop_timeval is not that time. imap refreshes it at the end
   of command_exec() and then syncs the mailbox for the command (EXPUNGE,
   STORE, IDLE's DONE) in the same ioloop callback, so the sync got a fresh
   deadline: the fault soak saw an EXPUNGE answered after 16 s against 9 s.
   And callbacks run in one batch share the ioloop_timeval of the batch, so
   the second would start with part of its time gone.

   So the clock is set when work for a user begins, and only then:
   - when the ioloop activates the user's context, i.e. calls one of its
     io or timeout callbacks: a command's input or a continuation after its
     output was flushed (a slow reader does not eat the storage's time), an
     IDLE wakeup, a mailbox watch;
   - in imap, when command_exec() starts a command or a continuation of one,
     so that commands pipelined in one packet get a deadline each;
   - when a mail user is created (LMTP delivers to each recipient with a
     user of its own).
   It stays put through everything the callback does afterwards. */

#include "lib.h"
#include "ioloop.h"
#include "time-util.h"
#include "master-service.h"
#include "mail-user.h"
#include "mail-storage-hooks.h"
#include "rbd-mail-storage.h"

#define RBD_CLOCK_CONTEXT(obj) MODULE_CONTEXT_REQUIRE(obj, rbd_clock_module)

struct client_command_context;
typedef void rbd_command_hook_t(struct client_command_context *cmd);

/* imap's command hooks. Only the imap binary has them: elsewhere these are
   NULL. */
void command_hook_register(rbd_command_hook_t *pre, rbd_command_hook_t *post)
        __attribute__((weak));
void command_hook_unregister(rbd_command_hook_t *pre, rbd_command_hook_t *post)
        __attribute__((weak));

struct rbd_clock_user {
	union mail_user_module_context module_ctx;
	struct ioloop_context *ioloop_ctx;
};

static MODULE_CONTEXT_DEFINE_INIT(rbd_clock_module, &mail_user_module_register);
static struct timeval rbd_command_started;
static bool rbd_command_hooked;

static void rbd_clock_start(void)
{
	i_gettimeofday(&rbd_command_started);
}

static void rbd_clock_command_pre(struct client_command_context *cmd ATTR_UNUSED)
{
	rbd_clock_start();
}

/* imap calls both hooks unconditionally; the clock needs only the start. */
static void rbd_clock_command_post(struct client_command_context *cmd ATTR_UNUSED)
{
}

static void rbd_clock_activate(struct mail_user *user ATTR_UNUSED)
{
	rbd_clock_start();
}

static void rbd_clock_user_deinit(struct mail_user *user)
{
	struct rbd_clock_user *cuser = RBD_CLOCK_CONTEXT(user);

	if (cuser->ioloop_ctx != NULL) {
		(io_loop_context_remove_callbacks)(
		        cuser->ioloop_ctx, (io_callback_t *)rbd_clock_activate,
		        NULL, user);
		io_loop_context_unref(&cuser->ioloop_ctx);
	}
	cuser->module_ctx.super.deinit(user);
}

static void rbd_clock_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct rbd_clock_user *cuser;

	cuser = p_new(user->pool, struct rbd_clock_user, 1);
	cuser->module_ctx.super = *v;
	user->vlast = &cuser->module_ctx.super;
	v->deinit = rbd_clock_user_deinit;
	MODULE_CONTEXT_SET(user, rbd_clock_module, cuser);

	/* Dovecot's mail service activated the user's context to create it. */
	cuser->ioloop_ctx = io_loop_get_current_context(current_ioloop);
	if (cuser->ioloop_ctx != NULL) {
		io_loop_context_ref(cuser->ioloop_ctx);
		/* Called without the macro: it cannot type-check a NULL
		   deactivate callback. */
		(io_loop_context_add_callbacks)(
		        cuser->ioloop_ctx, (io_callback_t *)rbd_clock_activate,
		        NULL, user);
	}
	rbd_clock_start();
}

static struct mail_storage_hooks rbd_clock_hooks = {
	.mail_user_created = rbd_clock_mail_user_created,
};

const struct timeval *rbd_command_clock(void)
{
	const char *name = master_service_get_name(master_service);

	if (strcmp(name, "imap") == 0 || strcmp(name, "pop3") == 0 ||
	    strcmp(name, "lmtp") == 0 || strcmp(name, "managesieve") == 0)
		return &rbd_command_started;
	return NULL;
}

bool rbd_command_stamped(const struct timeval *stamp)
{
	const struct timeval *clock = rbd_command_clock();

	return timeval_cmp(stamp, clock != NULL ? clock : &ioloop_timeval) == 0;
}

void rbd_command_stamp(struct timeval *stamp_r)
{
	const struct timeval *clock = rbd_command_clock();

	*stamp_r = clock != NULL ? *clock : ioloop_timeval;
}

void rbd_clock_register(struct module *module)
{
	rbd_clock_start();
	mail_storage_hooks_add(module, &rbd_clock_hooks);
	if (command_hook_register != NULL &&
	    strcmp(master_service_get_name(master_service), "imap") == 0) {
		command_hook_register(rbd_clock_command_pre,
		                      rbd_clock_command_post);
		rbd_command_hooked = TRUE;
	}
}

void rbd_clock_unregister(void)
{
	if (rbd_command_hooked) {
		command_hook_unregister(rbd_clock_command_pre,
		                        rbd_clock_command_post);
		rbd_command_hooked = FALSE;
	}
	mail_storage_hooks_remove(&rbd_clock_hooks);
}
