/* rbd: the node's rbd service (doc/service.md). Dovecot's master starts it
   as `service rbd` (conf.d/90-rbd.conf); it holds the node's one RADOS
   client, and every mail process of the node reaches the cluster through
   its unix listener instead of a librados client of its own.

   The server library (remote/rbd-server.h) serves each client connection
   on a thread of its own and runs the core there. This file is only the
   Dovecot side: the master protocol, privileges and logging, and counting
   clients for client_limit. Server threads never call into Dovecot: a
   client that has gone is reported through a pipe to this ioloop. */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "restrict-access.h"
#include "master-service.h"
#include "settings-parser.h"
#include "master-service-settings.h"
#include "mail-storage-settings.h"
#include "rbd-server.h"

#include <errno.h>
#include <malloc.h>
#include <unistd.h>

static int done_pipe[2];
static struct io *done_io;

/* On a server thread, which must not call into Dovecot (i_panic neither):
   the pipe's write end blocks, so only a signal can interrupt the write. */
static void rbd_service_client_done(void *context ATTR_UNUSED)
{
	const char c = 0;

	while (write(done_pipe[1], &c, 1) < 0 && errno == EINTR)
		;
}

static void rbd_service_clients_done(void *context ATTR_UNUSED)
{
	char buf[256];
	ssize_t i, n;

	n = read(done_pipe[0], buf, sizeof(buf));
	for (i = 0; i < n; i++)
		master_service_client_connection_destroyed(master_service);
}

/* The cluster and key the service connects with are its own, from plugin {
   rbd_ceph_conf, rbd_ceph_user } of its configuration, never a client's:
   a mail process cannot point the service at another ceph.conf, or another
   key that the service's user can read. */
static void rbd_service_pin_settings(void)
{
	static const char *const pinned[] = {"rbd_ceph_conf", "rbd_ceph_user",
	                                     NULL};
	const struct mail_user_settings *set =
	        master_service_settings_get_others(master_service)[0];
	const char *const *envs;
	unsigned int i, count;

	if (!array_is_created(&set->plugin_envs)) {
		i_info("rbd: no plugin { } settings: clients choose the "
		       "cluster");
		return;
	}
	envs = array_get(&set->plugin_envs, &count);
	for (i = 0; i + 1 < count; i += 2) {
		if (str_array_find(pinned, envs[i])) {
			i_info("rbd: %s = %s for every client", envs[i],
			       envs[i + 1]);
			rbd_server_pin(envs[i], envs[i + 1]);
		}
	}
}

static void rbd_service_client_connected(struct master_service_connection *conn)
{
	if (rbd_server_serve(conn->fd, rbd_service_client_done, NULL) < 0) {
		i_error("rbd: cannot start serving a client: %m");
		return;
	}
	master_service_client_connection_accept(conn);
}

int main(int argc, char *argv[])
{
	const struct setting_parser_info *set_roots[] = {
	        &mail_user_setting_parser_info, NULL};
	struct master_service_settings_input input;
	struct master_service_settings_output output;
	const char *error;

	/* Thousands of session threads, mostly blocked: glibc would give
	   them up to 8 malloc arenas per core, each reserving 64 MB of the
	   address space that vsz_limit bounds (README.Debian). */
	(void)mallopt(M_ARENA_MAX, 4);
	master_service = master_service_init("rbd", 0, &argc, &argv, "");
	if (master_getopt(master_service) > 0)
		return FATAL_DEFAULT;
	/* The config process sends the plugin { } settings to the module of
	   mail_user_setting_parser_info ("mail"), not to one named "rbd". */
	i_zero(&input);
	input.roots = set_roots;
	input.module = mail_user_setting_parser_info.module_name;
	input.service = "rbd";
	if (master_service_settings_read(master_service, &input, &output,
	                                 &error) < 0)
		i_fatal("Error reading configuration: %s", error);
	rbd_service_pin_settings();
	master_service_init_log_with_pid(master_service);
	/* The mail processes outlive a master that died (for up to 30 s with
	   shutdown_clients = yes, for as long as their clients stay with no):
	   their service must outlive them, as anvil does. It stops taking new
	   connections and exits once the last client has gone. */
	master_service_set_die_with_master(master_service, FALSE);
	restrict_access_by_env(RESTRICT_ACCESS_FLAG_ALLOW_ROOT, NULL);
	restrict_access_allow_coredumps(TRUE);

	if (pipe(done_pipe) < 0)
		i_fatal("pipe() failed: %m");
	fd_close_on_exec(done_pipe[0], TRUE);
	fd_close_on_exec(done_pipe[1], TRUE);
	fd_set_nonblock(done_pipe[0], TRUE);
	done_io = io_add(done_pipe[0], IO_READ, rbd_service_clients_done, NULL);

	master_service_init_finish(master_service);
	master_service_run(master_service, rbd_service_client_connected);

	io_remove(&done_io);
	master_service_deinit(&master_service);
	/* Clients still connected have threads inside librados: exit()'s
	   destructors would tear the library down under them. */
	_exit(0);
}
