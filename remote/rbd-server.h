/*
 * rbd-server.h - the service side of remote/ for a C program: the Dovecot
 * service shell (service/) and rbd-serve hand it each accepted client
 * connection and hear back when the client has gone.
 */
#ifndef RBD_SERVER_H
#define RBD_SERVER_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every session connects with `value` for the rbd_* setting `name`,
 * whatever its client's hello says (the service's own rbd_ceph_conf and
 * rbd_ceph_user). Call before serving the first client.
 */
void rbd_server_pin(const char *name, const char *value);

/*
 * Serves the client connected on `fd` on a thread of its own: the calls of
 * rbd-storage.h, on the core, until the client hangs up. Then closes `fd`,
 * and calls `done(context)` on that thread (NULL: nothing to call). Returns
 * 0, or -1 with errno when no thread could be started (`fd` is left open).
 */
int rbd_server_serve(int fd, void (*done)(void *context), void *context);

#ifdef __cplusplus
}
#endif

#endif
