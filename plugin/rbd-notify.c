/* Push for IDLE and NOTIFY: a mailbox with a notify callback watches its
   index object. The core signals a file descriptor (never calls us from a
   librados thread); the ioloop wakes on it and Dovecot syncs. A lost watch
   degrades to polling at mailbox_idle_check_interval, never to a stale
   view: the poll timer runs whether or not the watch works. The core
   registers a lost watch again in the background and wakes us to sync
   when it is back; a sync at the loss itself would wait for the OSD that
   is away, and hold up the client's next command (IDLE's DONE).

   imap removes the callback while a command runs and sets it again a
   second after (NOTIFY) or at the next IDLE. The watch stays open across
   that gap: a change made meanwhile is remembered and reported as soon as
   the callback is back, not at the next poll.

   Hibernation: while a callback is set, the mailbox also has Dovecot's
   file watch (mailbox_watch_add) on a file in its index directory, which
   is what imap-hibernate takes over (mailbox_watch_extract_notify_fd) to
   wake the client when the file changes. Nothing writes the file while
   this process lives. imap ends an IDLE and frees the mailbox in one
   command (rbd_command_stamped) only when the client is destroyed,
   hibernated or gone: the watch is then left lingering in the rbd
   service, which writes the file at every change of the mailbox
   (rbd_watch_close_lingering). */

#include "lib.h"
#include "ioloop.h"
#include "mail-storage-private.h"
#include "mailbox-watch.h"
#include "rbd-mail-storage.h"

#include <fcntl.h>
#include <unistd.h>

/* How long a hibernated session's watch outlives its process. At the end
   the file is written once more: the client wakes, and its new process
   watches again. IMAP clients restart IDLE within 30 minutes anyway. */
#define RBD_NOTIFY_LINGER_SECS (30 * 60)
#define RBD_NOTIFY_FILE_NAME "rbd.notify"

/* The file imap-hibernate watches, when the mailbox's cache is on disk. */
static const char *rbd_notify_file(struct rbd_mailbox *mbox)
{
	const char *dir;

	if (mailbox_get_path_to(&mbox->box, MAILBOX_LIST_PATH_TYPE_INDEX,
	                        &dir) <= 0)
		return NULL;
	return t_strconcat(dir, "/" RBD_NOTIFY_FILE_NAME, NULL);
}

static void rbd_notify_close_watch(struct rbd_mailbox *mbox)
{
	const char *path;
	int fd;

	if (!rbd_command_stamped(&mbox->notify_stopped) ||
	    (path = rbd_notify_file(mbox)) == NULL ||
	    (fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
		rbd_watch_close(&mbox->watch);
		return;
	}
	/* Writers notify only a mailbox said to be watched: for as long as
	   the watch lingers. Without the cluster, the client wakes at the end
	   of it, or when it speaks. */
	if (!rbd_storage_unavailable(mbox->storage)) {
		struct rbd_error err;

		if (rbd_index_keep_watched(mbox->index, RBD_NOTIFY_LINGER_SECS,
		                           &err) != RBD_OK) {
			e_debug(mbox->box.event,
			        "rbd: lingering watch not announced: %s",
			        err.message);
		}
	}
	rbd_watch_close_lingering(&mbox->watch, fd, RBD_NOTIFY_LINGER_SECS);
}

/* Writers notify only a mailbox said to be watched (rbd_watch_open says so
   for RBD_WATCHED_SECS): an IDLE that lasts longer says so again, at each
   poll and at each start. No I/O until it is due. */
static void rbd_notify_keep_watched(struct rbd_mailbox *mbox)
{
	struct rbd_error err;

	if (mbox->watch == NULL || rbd_storage_unavailable(mbox->storage))
		return;
	if (rbd_index_keep_watched(mbox->index, RBD_WATCHED_SECS, &err) !=
	    RBD_OK) {
		e_debug(mbox->box.event, "rbd: watch not announced: %s",
		        err.message);
	}
}

void rbd_notify_deinit(struct rbd_mailbox *mbox)
{
	io_remove(&mbox->watch_io);
	timeout_remove(&mbox->poll_to);
	timeout_remove(&mbox->pending_to);
	mailbox_watch_remove_all(&mbox->box);
	mbox->notify_pending = FALSE;
	if (mbox->watch != NULL)
		rbd_notify_close_watch(mbox);
}

/* Adds Dovecot's file watch for imap-hibernate; the file is created before
   the watch, so that creating it wakes nobody. */
static void rbd_notify_watch_file(struct rbd_mailbox *mbox)
{
	const char *path = rbd_notify_file(mbox);
	int fd;

	if (path == NULL ||
	    mbox->box.storage->set->mailbox_idle_check_interval == 0)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		e_debug(mbox->box.event,
		        "rbd: no file for imap-hibernate: open(%s) failed: %m",
		        path);
		return;
	}
	i_close_fd(&fd);
	mailbox_watch_add(&mbox->box, path);
}

static void rbd_notify_callback(struct rbd_mailbox *mbox)
{
	rbd_notify_keep_watched(mbox);
	timeout_remove(&mbox->pending_to);
	if (mbox->box.notify_callback == NULL)
		mbox->notify_pending = TRUE;
	else {
		mbox->notify_pending = FALSE;
		mbox->box.notify_callback(&mbox->box, mbox->box.notify_context);
	}
}

static void rbd_notify_input(struct rbd_mailbox *mbox)
{
	unsigned int bits = rbd_watch_consume(mbox->watch);

	if ((bits & RBD_WATCH_LOST) != 0) {
		e_debug(event_create_passthrough(mbox->box.event)
		                ->set_name("rbd_watch_lost")
		                ->event(),
		        "rbd: watch lost, re-watching");
	}
	if ((bits & RBD_WATCH_CHANGED) != 0)
		rbd_notify_callback(mbox);
}

static void rbd_notify_open_watch(struct rbd_mailbox *mbox)
{
	struct rbd_error err;
	const char *reason;

	/* On failure polling still runs; the next IDLE tries again. */
	if (rbd_mailbox_open_index(mbox) < 0)
		reason = mailbox_get_last_internal_error(&mbox->box, NULL);
	else if (rbd_watch_open(mbox->index, &mbox->watch, &err) != RBD_OK)
		reason = err.message;
	else
		reason = NULL;
	if (reason != NULL) {
		e_warning(mbox->box.event,
		          "rbd: cannot watch mailbox, polling instead: %s",
		          reason);
		return;
	}
	mbox->watch_io = io_add(rbd_watch_fd(mbox->watch), IO_READ,
	                        rbd_notify_input, mbox);
}

void rbd_notify_changes(struct mailbox *box)
{
	struct rbd_mailbox *mbox = RBD_MAILBOX(box);
	unsigned int interval = box->storage->set->mailbox_idle_check_interval;

	if (box->notify_callback == NULL) {
		/* The watch stays: see the top of this file. */
		timeout_remove(&mbox->poll_to);
		timeout_remove(&mbox->pending_to);
		mailbox_watch_remove_all(box);
		rbd_command_stamp(&mbox->notify_stopped);
		return;
	}
	if (mbox->watch == NULL)
		rbd_notify_open_watch(mbox);
	else
		rbd_notify_keep_watched(mbox);
	if (mbox->watch != NULL && box->notify_files == NULL)
		rbd_notify_watch_file(mbox);
	if (mbox->poll_to == NULL && interval > 0) {
		mbox->poll_to =
		        timeout_add(interval * 1000, rbd_notify_callback, mbox);
	}
	/* Not from within this call: imap is still setting up its watch. */
	if (mbox->notify_pending && mbox->pending_to == NULL) {
		mbox->pending_to =
		        timeout_add_short(0, rbd_notify_callback, mbox);
	}
}
