/* Changes answered NO that a session could not settle before it ended.

   When a write's outcome is unknown at its command's deadline, the client
   hears NO [UNAVAILABLE] and the core keeps what the change did, to undo
   it if it took effect after all (doc/design.md, "Undo of a change
   answered NO"). A session that ends while the cluster still cannot tell
   (it logs out, or is disconnected, during the outage) would drop them,
   and the cluster may then apply the change: a NO for a change that took
   effect. So they are kept in the user's cache dir on this node, in a
   directory of their own (rbd-unsettled/kept.*, written whole as tmp.*,
   then renamed), and the next process of the user on the node claims each
   file (a rename to claimed.*: one process wins), adds its changes back and
   settles them. A directory of its own so that a login costs one failed
   opendir() in the usual case, not a listing of every mailbox's cache.

   With INDEX=MEMORY there is no cache dir: the changes are dropped and
   logged as unchecked, as before. */

#include "lib.h"
#include "str.h"
#include "hostpid.h"
#include "ioloop.h"
#include "read-full.h"
#include "write-full.h"
#include "rbd-mail-storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define RBD_UNSETTLED_DIR "rbd-unsettled"
#define RBD_UNSETTLED_KEPT "kept."
#define RBD_UNSETTLED_TMP "tmp."
#define RBD_UNSETTLED_CLAIMED "claimed."

static int rbd_unsettled_write(const char *dir, const char *name,
                               const struct rbd_buffer *kept,
                               const char **error_r)
{
	const char *tmp = t_strconcat(dir, "/" RBD_UNSETTLED_TMP, name, NULL);
	const char *path = t_strconcat(dir, "/" RBD_UNSETTLED_KEPT, name, NULL);
	int fd;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		*error_r = t_strdup_printf("mkdir(%s) failed: %m", dir);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m", tmp);
		return -1;
	}
	if (write_full(fd, kept->data, kept->size) < 0 || fdatasync(fd) < 0) {
		*error_r = t_strdup_printf("write(%s) failed: %m", tmp);
		i_close_fd(&fd);
		i_unlink(tmp);
		return -1;
	}
	i_close_fd(&fd);
	if (rename(tmp, path) < 0) {
		*error_r = t_strdup_printf("rename(%s, %s) failed: %m", tmp, path);
		i_unlink(tmp);
		return -1;
	}
	return 0;
}

void rbd_unsettled_keep(struct mailbox_list *list, struct rbd_user *user)
{
	const char *root = rbd_list_cache_root(list);
	struct rbd_buffer *kept = NULL;
	const char *name, *error;

	rbd_user_take_unsettled(user, root == NULL ? NULL : &kept);
	if (kept == NULL)
		return;
	name = t_strdup_printf("%s.%ld.%06ld", my_pid,
	                       (long)ioloop_timeval.tv_sec,
	                       (long)ioloop_timeval.tv_usec);
	if (rbd_unsettled_write(t_strconcat(root, "/" RBD_UNSETTLED_DIR, NULL),
	                        name, kept, &error) < 0) {
		e_error(list->ns->user->event,
		        "rbd: the changes logged as kept for the next session "
		        "could not be kept (%s): they may have taken effect",
		        error);
	}
	rbd_buffer_free(&kept);
}

/* Reads and removes one claimed file into the user. */
static void rbd_unsettled_add_file(struct mailbox_list *list,
                                   struct rbd_user *user, const char *path)
{
	struct event *event = list->ns->user->event;
	struct rbd_error err;
	struct stat st;
	void *data;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd == -1) {
		e_error(event, "rbd: open(%s) failed: %m", path);
		return;
	}
	if (fstat(fd, &st) < 0) {
		e_error(event, "rbd: fstat(%s) failed: %m", path);
		i_close_fd(&fd);
		return;
	}
	data = i_malloc(I_MAX(st.st_size, 1));
	if (read_full(fd, data, st.st_size) <= 0) {
		e_error(event, "rbd: read(%s) failed or was cut short", path);
	} else if (rbd_user_add_unsettled(user, data, st.st_size, &err) !=
	           RBD_OK) {
		e_error(event, "rbd: %s: %s: the changes it names are not checked",
		        path, err.message);
	}
	i_free(data);
	i_close_fd(&fd);
	i_unlink(path);
}

void rbd_unsettled_adopt(struct mailbox_list *list, struct rbd_user *user)
{
	const char *root = rbd_list_cache_root(list);
	const char *path, *from, *claimed;
	struct dirent *d;
	unsigned int n = 0;
	DIR *dir;

	if (root == NULL)
		return;
	path = t_strconcat(root, "/" RBD_UNSETTLED_DIR, NULL);
	if ((dir = opendir(path)) == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		if (!str_begins(d->d_name, RBD_UNSETTLED_KEPT))
			continue;
		from = t_strconcat(path, "/", d->d_name, NULL);
		claimed = t_strdup_printf("%s/" RBD_UNSETTLED_CLAIMED "%s.%u",
		                          path, my_pid, n++);
		/* Another process of the user may be claiming it too. */
		if (rename(from, claimed) == 0)
			rbd_unsettled_add_file(list, user, claimed);
	}
	(void)closedir(dir);
	if (n > 0)
		rbd_user_settle(user);
}
