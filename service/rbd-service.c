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
#include "ioloop.h"
#include "restrict-access.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "rbd-server.h"

#include <unistd.h>

static int done_pipe[2];
static struct io *done_io;

/* On a server thread. */
static void rbd_service_client_done(void *context ATTR_UNUSED)
{
	const char c = 0;

	if (write(done_pipe[1], &c, 1) != 1)
		i_unreached();
}

static void rbd_service_clients_done(void *context ATTR_UNUSED)
{
	char buf[256];
	ssize_t i, n;

	n = read(done_pipe[0], buf, sizeof(buf));
	for (i = 0; i < n; i++)
		master_service_client_connection_destroyed(master_service);
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
	const char *error;

	master_service = master_service_init("rbd", 0, &argc, &argv, "");
	if (master_getopt(master_service) > 0)
		return FATAL_DEFAULT;
	if (master_service_settings_read_simple(master_service, NULL, &error) <
	    0)
		i_fatal("Error reading configuration: %s", error);
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
