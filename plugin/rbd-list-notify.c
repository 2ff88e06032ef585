/* NOTIFY (RFC 5465) for the rbd mailbox list: what
   mailbox-list-index-notify.c does for Dovecot's own storages, with RADOS
   watches in place of inotify on the list index log, so that a change made
   on any node reaches this process at once. The user root object `r` is
   watched for names and subscriptions, and each mailbox's index object
   `i.<guid>` for its messages and flags (only when status events are
   wanted). A wake-up only marks what changed; the next
   mailbox_list_notify_next() diffs the list and each changed mailbox's
   status against what was last reported, and returns the differences in
   the list index's order: deletes, renames, creates, subscribes,
   unsubscribes, status changes. The core signals an fd from its librados
   threads; nothing here runs on them.

   A lost watch marks its object changed and is re-registered; the poll
   timer (mailbox_idle_check_interval) retries any watch that could not be,
   and re-reads what it covers: a degraded watch costs latency, never an
   event. */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "ioloop.h"
#include "mail-namespace.h"
#include "rbd-mail-storage.h"

/* What imap's NOTIFY compares, as the list index does. */
static const enum mailbox_status_items rbd_list_notify_status_items =
        STATUS_UIDVALIDITY | STATUS_UIDNEXT | STATUS_MESSAGES | STATUS_UNSEEN |
        STATUS_HIGHESTMODSEQ;

struct rbd_list_notify_box {
	struct rbd_list_notify *lnotify;
	guid_128_t guid;
	/* The storage name last reported. */
	char *name;

	struct rbd_index *index;
	struct rbd_watch *watch;
	struct io *io;

	/* The status last reported, if any. */
	struct mailbox_status status;
	bool have_status : 1;
	/* The index changed (or its watch was lost) since the last look. */
	bool changed : 1;
	/* Still listed (during a list diff). */
	bool listed : 1;
};

struct rbd_list_notify_rename {
	const char *old_name, *new_name;
};
ARRAY_DEFINE_TYPE(rbd_list_notify_rename, struct rbd_list_notify_rename);

struct rbd_list_notify {
	struct mailbox_list_notify notify;
	struct rbd_user *user;
	/* Watch mailbox indexes too (status events wanted). */
	bool watch_boxes;

	/* The list as last reported, in name order. */
	struct rbd_mailbox_entries *entries;
	/* Every listed mailbox, by GUID. */
	HASH_TABLE(uint8_t *, struct rbd_list_notify_box *) boxes;

	struct rbd_watch *list_watch;
	struct io *list_io;
	bool list_changed;

	void (*wait_callback)(void *context);
	void *wait_context;
	struct timeout *to_poll;

	/* Records found by the last look, returned one by one. */
	pool_t rec_pool;
	ARRAY(struct mailbox_list_notify_rec) recs;
	unsigned int rec_idx;
	bool reading;
	bool failed;
};

static void rbd_list_notify_wake(struct rbd_list_notify *lnotify)
{
	if (lnotify->wait_callback != NULL)
		lnotify->wait_callback(lnotify->wait_context);
}

/* TRUE if the watched object changed, or its lost watch is back (it may
   have changed unseen meanwhile). */
static bool rbd_list_notify_consume(struct rbd_watch *watch)
{
	return (rbd_watch_consume(watch) & RBD_WATCH_CHANGED) != 0;
}

static void rbd_list_notify_box_input(struct rbd_list_notify_box *box)
{
	if (rbd_list_notify_consume(box->watch)) {
		box->changed = TRUE;
		rbd_list_notify_wake(box->lnotify);
	}
}

static void rbd_list_notify_list_input(struct rbd_list_notify *lnotify)
{
	if (rbd_list_notify_consume(lnotify->list_watch)) {
		lnotify->list_changed = TRUE;
		rbd_list_notify_wake(lnotify);
	}
}

/* Watches first, reads after: a change between the two is then seen twice,
   never missed. On failure the poll timer tries again. */
static void rbd_list_notify_box_watch(struct rbd_list_notify_box *box)
{
	struct rbd_error err;

	if (box->index == NULL && rbd_index_open(box->lnotify->user, box->guid,
	                                         &box->index, &err) != RBD_OK)
		return;
	if (rbd_watch_open(box->index, &box->watch, &err) != RBD_OK) {
		e_debug(box->lnotify->notify.list->ns->user->event,
		        "rbd: cannot watch mailbox %s, polling: %s", box->name,
		        err.message);
		return;
	}
	box->io = io_add(rbd_watch_fd(box->watch), IO_READ,
	                 rbd_list_notify_box_input, box);
}

static void rbd_list_notify_list_watch(struct rbd_list_notify *lnotify)
{
	struct rbd_error err;

	if (rbd_watch_open_list(lnotify->user, &lnotify->list_watch, &err) !=
	    RBD_OK) {
		e_debug(lnotify->notify.list->ns->user->event,
		        "rbd: cannot watch the mailbox list, polling: %s",
		        err.message);
		return;
	}
	lnotify->list_io = io_add(rbd_watch_fd(lnotify->list_watch), IO_READ,
	                          rbd_list_notify_list_input, lnotify);
}

static struct rbd_list_notify_box *
rbd_list_notify_box_add(struct rbd_list_notify *lnotify,
                        const struct rbd_mailbox_entry *entry)
{
	struct rbd_list_notify_box *box;
	uint8_t *guid_p;

	box = i_new(struct rbd_list_notify_box, 1);
	box->lnotify = lnotify;
	memcpy(box->guid, entry->guid, sizeof(box->guid));
	box->name = i_strdup(entry->name);
	box->listed = TRUE;
	guid_p = box->guid;
	hash_table_insert(lnotify->boxes, guid_p, box);
	if (lnotify->watch_boxes)
		rbd_list_notify_box_watch(box);
	return box;
}

static struct rbd_list_notify_box *
rbd_list_notify_box_lookup(struct rbd_list_notify *lnotify,
                           const struct rbd_mailbox_entry *entry)
{
	const uint8_t *guid_p = entry->guid;

	return hash_table_lookup(lnotify->boxes, guid_p);
}

static void rbd_list_notify_box_free(struct rbd_list_notify_box **_box)
{
	struct rbd_list_notify_box *box = *_box;

	*_box = NULL;
	io_remove(&box->io);
	if (box->watch != NULL)
		rbd_watch_close(&box->watch);
	if (box->index != NULL)
		rbd_index_close(&box->index);
	i_free(box->name);
	i_free(box);
}

static void rbd_list_notify_box_remove(struct rbd_list_notify *lnotify,
                                       struct rbd_list_notify_box *box)
{
	uint8_t *guid_p = box->guid;

	hash_table_remove(lnotify->boxes, guid_p);
	rbd_list_notify_box_free(&box);
}

static int rbd_list_notify_get_status(struct rbd_list_notify *lnotify,
                                      const char *name,
                                      struct mailbox_status *status_r)
{
	struct mailbox_list *list = lnotify->notify.list;
	struct mailbox *box;
	enum mail_error error;
	int ret;

	/* Read-only: looking must not claim \Recent for this session. */
	box = mailbox_alloc(list, mailbox_list_get_vname(list, name),
	                    MAILBOX_FLAG_READONLY);
	ret = mailbox_get_status(box, rbd_list_notify_status_items, status_r);
	if (ret < 0) {
		(void)mailbox_get_last_error(box, &error);
		/* Deleted meanwhile: the list watch reports that. */
		if (error == MAIL_ERROR_NOTFOUND)
			ret = 0;
		else {
			e_warning(list->ns->user->event,
			          "rbd: NOTIFY status of %s: %s", name,
			          mailbox_get_last_internal_error(box, NULL));
		}
	} else {
		ret = 1;
	}
	mailbox_free(&box);
	return ret;
}

static bool rbd_list_notify_is_inbox(struct rbd_list_notify *lnotify,
                                     const char *name)
{
	/* rbd-list.c always lists it: it never appears or goes. */
	return (lnotify->notify.list->ns->flags & NAMESPACE_FLAG_INBOX_USER) !=
	               0 &&
	       strcmp(name, "INBOX") == 0;
}

static void rbd_list_notify_add(struct rbd_list_notify *lnotify,
                                enum mailbox_list_notify_event events,
                                const char *name, const uint8_t *guid,
                                const char *old_name)
{
	struct mailbox_list *list = lnotify->notify.list;
	struct mailbox_list_notify_rec *rec;

	if ((events & lnotify->notify.mask) == 0)
		return;
	rec = array_append_space(&lnotify->recs);
	rec->events = events;
	rec->storage_name = p_strdup(lnotify->rec_pool, name);
	rec->vname =
	        p_strdup(lnotify->rec_pool, mailbox_list_get_vname(list, name));
	if (guid != NULL)
		memcpy(rec->guid, guid, sizeof(rec->guid));
	if (old_name != NULL) {
		rec->old_vname =
		        p_strdup(lnotify->rec_pool,
		                 mailbox_list_get_vname(list, old_name));
	}
}

static int rbd_list_notify_box_name_cmp(struct rbd_list_notify_box *const *b1,
                                        struct rbd_list_notify_box *const *b2)
{
	return strcmp((*b1)->name, (*b2)->name);
}

static void rbd_list_notify_diff_deleted(struct rbd_list_notify *lnotify)
{
	ARRAY(struct rbd_list_notify_box *) deleted;
	struct hash_iterate_context *iter;
	struct rbd_list_notify_box *box;
	uint8_t *guid;

	t_array_init(&deleted, 8);
	iter = hash_table_iterate_init(lnotify->boxes);
	while (hash_table_iterate(iter, lnotify->boxes, &guid, &box)) {
		if (!box->listed)
			array_push_back(&deleted, &box);
	}
	hash_table_iterate_deinit(&iter);
	array_sort(&deleted, rbd_list_notify_box_name_cmp);
	array_foreach_elem(&deleted, box)
	{
		if (!rbd_list_notify_is_inbox(lnotify, box->name)) {
			rbd_list_notify_add(lnotify, MAILBOX_LIST_NOTIFY_DELETE,
			                    box->name, box->guid, NULL);
		}
		rbd_list_notify_box_remove(lnotify, box);
	}
}

/* A mailbox that appeared since the last look may have had messages added
   before its watch was registered: those are its first change. */
static bool rbd_list_notify_box_appended(struct rbd_list_notify_box *box)
{
	struct rbd_index_status status;
	struct rbd_error err;

	if (box->watch == NULL)
		return FALSE;
	if (rbd_index_get_status(box->index, &status, &err) != RBD_OK)
		return TRUE;
	return status.uidnext > 1;
}

/* Mailboxes by GUID: a GUID under a new name is a rename, a new GUID a
   create (also under a name that was deleted meanwhile), a GUID gone a
   delete. */
static void
rbd_list_notify_diff_mailboxes(struct rbd_list_notify *lnotify,
                               const struct rbd_mailbox_entries *entries,
                               ARRAY_TYPE(rbd_list_notify_rename) * renames)
{
	struct rbd_list_notify_rename *rename;
	ARRAY(const struct rbd_mailbox_entry *) renamed, created;
	const struct rbd_mailbox_entry *entry;
	struct hash_iterate_context *iter;
	struct rbd_list_notify_box *box;
	uint8_t *guid;
	const char *old_name;
	size_t i;

	iter = hash_table_iterate_init(lnotify->boxes);
	while (hash_table_iterate(iter, lnotify->boxes, &guid, &box))
		box->listed = FALSE;
	hash_table_iterate_deinit(&iter);

	t_array_init(&renamed, 8);
	t_array_init(&created, 8);
	for (i = 0; i < entries->count; i++) {
		entry = &entries->entries[i];
		if (entry->nonexistent)
			continue;
		box = rbd_list_notify_box_lookup(lnotify, entry);
		if (box == NULL)
			array_push_back(&created, &entry);
		else {
			box->listed = TRUE;
			if (strcmp(box->name, entry->name) != 0)
				array_push_back(&renamed, &entry);
		}
	}
	rbd_list_notify_diff_deleted(lnotify);
	array_foreach_elem(&renamed, entry)
	{
		box = rbd_list_notify_box_lookup(lnotify, entry);
		old_name = t_strdup(box->name);
		i_free(box->name);
		box->name = i_strdup(entry->name);
		rbd_list_notify_add(lnotify, MAILBOX_LIST_NOTIFY_RENAME,
		                    entry->name, entry->guid, old_name);
		rename = array_append_space(renames);
		rename->old_name = old_name;
		rename->new_name = entry->name;
	}
	array_foreach_elem(&created, entry)
	{
		/* No status yet: its first change reports every item as
		   new (UIDVALIDITY too), as the list index does. */
		box = rbd_list_notify_box_add(lnotify, entry);
		box->changed = rbd_list_notify_box_appended(box);
		if (!rbd_list_notify_is_inbox(lnotify, entry->name)) {
			rbd_list_notify_add(lnotify, MAILBOX_LIST_NOTIFY_CREATE,
			                    entry->name, entry->guid, NULL);
		}
	}
}

static const char *
rbd_list_notify_next_subscribed(const struct rbd_mailbox_entries *entries,
                                size_t *idx)
{
	while (*idx < entries->count) {
		const struct rbd_mailbox_entry *entry =
		        &entries->entries[(*idx)++];

		if (entry->subscribed)
			return entry->name;
	}
	return NULL;
}

static bool rbd_list_notify_find(const ARRAY_TYPE(const_string) * names,
                                 const char *name, unsigned int *idx_r)
{
	const char *const *items;
	unsigned int count;

	items = array_get(names, &count);
	for (*idx_r = 0; *idx_r < count; (*idx_r)++) {
		if (strcmp(items[*idx_r], name) == 0)
			return TRUE;
	}
	return FALSE;
}

/* A renamed mailbox's subscription moves with it (the core renames both in
   one op, as Dovecot does on its own storages). mdbox reports the rename
   alone, not the subscription changes that come with it: nor does this. */
static void
rbd_list_notify_drop_renamed(ARRAY_TYPE(const_string) * subscribed,
                             ARRAY_TYPE(const_string) * unsubscribed,
                             const ARRAY_TYPE(rbd_list_notify_rename) * renames)
{
	const struct rbd_list_notify_rename *rename;
	unsigned int sub_idx, unsub_idx;

	array_foreach(renames, rename)
	{
		if (rbd_list_notify_find(subscribed, rename->new_name,
		                         &sub_idx) &&
		    rbd_list_notify_find(unsubscribed, rename->old_name,
		                         &unsub_idx)) {
			array_delete(subscribed, sub_idx, 1);
			array_delete(unsubscribed, unsub_idx, 1);
		}
	}
}

/* Both lists are in name order: one merge finds what was subscribed and
   what was unsubscribed. */
static void rbd_list_notify_diff_subscriptions(
        struct rbd_list_notify *lnotify,
        const struct rbd_mailbox_entries *entries,
        const ARRAY_TYPE(rbd_list_notify_rename) * renames)
{
	ARRAY_TYPE(const_string) subscribed, unsubscribed;
	const struct rbd_mailbox_entries *old = lnotify->entries;
	const char *old_name, *new_name, *name;
	size_t old_idx = 0, new_idx = 0;
	int cmp;

	t_array_init(&subscribed, 8);
	t_array_init(&unsubscribed, 8);
	old_name = rbd_list_notify_next_subscribed(old, &old_idx);
	new_name = rbd_list_notify_next_subscribed(entries, &new_idx);
	while (old_name != NULL || new_name != NULL) {
		cmp = old_name == NULL   ? 1
		      : new_name == NULL ? -1
		                         : strcmp(old_name, new_name);
		if (cmp > 0)
			array_push_back(&subscribed, &new_name);
		else if (cmp < 0)
			array_push_back(&unsubscribed, &old_name);
		if (cmp <= 0)
			old_name =
			        rbd_list_notify_next_subscribed(old, &old_idx);
		if (cmp >= 0) {
			new_name = rbd_list_notify_next_subscribed(entries,
			                                           &new_idx);
		}
	}
	rbd_list_notify_drop_renamed(&subscribed, &unsubscribed, renames);
	array_foreach_elem(&subscribed, name)
	{
		rbd_list_notify_add(lnotify, MAILBOX_LIST_NOTIFY_SUBSCRIBE,
		                    name, NULL, NULL);
	}
	array_foreach_elem(&unsubscribed, name)
	{
		rbd_list_notify_add(lnotify, MAILBOX_LIST_NOTIFY_UNSUBSCRIBE,
		                    name, NULL, NULL);
	}
}

static int rbd_list_notify_read_list(struct rbd_list_notify *lnotify)
{
	ARRAY_TYPE(rbd_list_notify_rename) renames;
	struct rbd_mailbox_entries *entries;
	struct rbd_error err;

	lnotify->list_changed = FALSE;
	if (rbd_list_mailboxes(lnotify->user, &entries, &err) != RBD_OK) {
		e_warning(lnotify->notify.list->ns->user->event,
		          "rbd: NOTIFY cannot read the mailbox list: %s",
		          err.message);
		lnotify->list_changed = TRUE;
		return -1;
	}
	t_array_init(&renames, 4);
	rbd_list_notify_diff_mailboxes(lnotify, entries, &renames);
	rbd_list_notify_diff_subscriptions(lnotify, entries, &renames);
	rbd_mailbox_entries_free(&lnotify->entries);
	lnotify->entries = entries;
	return 0;
}

static enum mailbox_list_notify_event
rbd_list_notify_status_events(const struct mailbox_status *old,
                              const struct mailbox_status *cur)
{
	enum mailbox_list_notify_event events = 0;

	if (old->uidvalidity != cur->uidvalidity)
		events |= MAILBOX_LIST_NOTIFY_UIDVALIDITY;
	if (old->uidnext != cur->uidnext)
		events |= MAILBOX_LIST_NOTIFY_APPENDS;
	/* As the list index: fewer messages means expunges, even if some
	   were appended too. */
	if (old->messages > cur->messages)
		events |= MAILBOX_LIST_NOTIFY_EXPUNGES;
	if (old->unseen != cur->unseen)
		events |= MAILBOX_LIST_NOTIFY_SEEN_CHANGES;
	if (old->highest_modseq < cur->highest_modseq)
		events |= MAILBOX_LIST_NOTIFY_MODSEQ_CHANGES;
	return events;
}

static void rbd_list_notify_read_box(struct rbd_list_notify *lnotify,
                                     struct rbd_list_notify_box *box)
{
	static const struct mailbox_status no_status;
	struct mailbox_status status;
	enum mailbox_list_notify_event events;
	int ret;

	ret = rbd_list_notify_get_status(lnotify, box->name, &status);
	if (ret < 0) {
		/* Stays changed: the next look retries. */
		lnotify->failed = TRUE;
		return;
	}
	box->changed = FALSE;
	if (ret == 0)
		return;
	events = rbd_list_notify_status_events(
	        box->have_status ? &box->status : &no_status, &status);
	box->status = status;
	box->have_status = TRUE;
	if (events != 0)
		rbd_list_notify_add(lnotify, events, box->name, box->guid,
		                    NULL);
}

static void rbd_list_notify_read_boxes(struct rbd_list_notify *lnotify)
{
	const struct rbd_mailbox_entry *entry;
	struct rbd_list_notify_box *box;
	size_t i;

	for (i = 0; i < lnotify->entries->count; i++) {
		entry = &lnotify->entries->entries[i];
		if (entry->nonexistent)
			continue;
		box = rbd_list_notify_box_lookup(lnotify, entry);
		if (box != NULL && box->changed)
			rbd_list_notify_read_box(lnotify, box);
	}
}

static void rbd_list_notify_look(struct rbd_list_notify *lnotify)
{
	p_clear(lnotify->rec_pool);
	array_clear(&lnotify->recs);
	lnotify->rec_idx = 0;
	T_BEGIN
	{
		if (lnotify->list_changed &&
		    rbd_list_notify_read_list(lnotify) < 0)
			lnotify->failed = TRUE;
		if (lnotify->watch_boxes)
			rbd_list_notify_read_boxes(lnotify);
	}
	T_END;
}

int rbd_list_notify_next(struct mailbox_list_notify *notify,
                         const struct mailbox_list_notify_rec **rec_r)
{
	struct rbd_list_notify *lnotify =
	        container_of(notify, struct rbd_list_notify, notify);
	int ret;

	if (!lnotify->reading) {
		rbd_list_notify_look(lnotify);
		lnotify->reading = TRUE;
	}
	if (lnotify->rec_idx < array_count(&lnotify->recs)) {
		*rec_r = array_idx(&lnotify->recs, lnotify->rec_idx++);
		return 1;
	}
	lnotify->reading = FALSE;
	ret = lnotify->failed ? -1 : 0;
	lnotify->failed = FALSE;
	return ret;
}

/* Writers notify only a mailbox said to be watched (rbd_watch_open says so
   for RBD_WATCHED_SECS): a NOTIFY that lasts longer says so again at each
   poll. No I/O until it is due. */
static void rbd_list_notify_keep_watched(struct rbd_list_notify_box *box)
{
	struct rbd_error err;

	if (rbd_index_keep_watched(box->index, RBD_WATCHED_SECS, &err) !=
	    RBD_OK) {
		e_debug(box->lnotify->notify.list->ns->user->event,
		        "rbd: watch of %s not announced: %s", box->name,
		        err.message);
	}
}

/* Marks what a watch that does not work (any more) covers as changed, and
   tries to watch it again. TRUE if anything is to be looked at. */
static bool rbd_list_notify_check_watches(struct rbd_list_notify *lnotify)
{
	struct hash_iterate_context *iter;
	struct rbd_list_notify_box *box;
	uint8_t *guid;
	bool changed;

	if (lnotify->list_watch == NULL) {
		rbd_list_notify_list_watch(lnotify);
		lnotify->list_changed = TRUE;
	} else if (rbd_list_notify_consume(lnotify->list_watch)) {
		lnotify->list_changed = TRUE;
	}
	changed = lnotify->list_changed;

	if (!lnotify->watch_boxes)
		return changed;
	iter = hash_table_iterate_init(lnotify->boxes);
	while (hash_table_iterate(iter, lnotify->boxes, &guid, &box)) {
		if (box->watch == NULL) {
			rbd_list_notify_box_watch(box);
			box->changed = TRUE;
		} else if (rbd_list_notify_consume(box->watch)) {
			box->changed = TRUE;
		}
		if (box->watch != NULL)
			rbd_list_notify_keep_watched(box);
		changed = changed || box->changed;
	}
	hash_table_iterate_deinit(&iter);
	return changed;
}

static void rbd_list_notify_poll(struct rbd_list_notify *lnotify)
{
	if (rbd_list_notify_check_watches(lnotify))
		rbd_list_notify_wake(lnotify);
}

void rbd_list_notify_wait(struct mailbox_list_notify *notify,
                          void (*callback)(void *context), void *context)
{
	struct rbd_list_notify *lnotify =
	        container_of(notify, struct rbd_list_notify, notify);
	unsigned int interval =
	        notify->list->mail_set->mailbox_idle_check_interval;

	lnotify->wait_callback = callback;
	lnotify->wait_context = context;
	if (callback == NULL)
		timeout_remove(&lnotify->to_poll);
	else if (lnotify->to_poll == NULL && interval > 0) {
		lnotify->to_poll = timeout_add(interval * 1000,
		                               rbd_list_notify_poll, lnotify);
	}
}

void rbd_list_notify_flush(struct mailbox_list_notify *notify)
{
	struct rbd_list_notify *lnotify =
	        container_of(notify, struct rbd_list_notify, notify);

	/* Watches deliver at once: only what could not be watched is
	   pending. */
	rbd_list_notify_poll(lnotify);
}

int rbd_list_notify_init(struct mailbox_list *list,
                         enum mailbox_list_notify_event mask,
                         struct mailbox_list_notify **notify_r)
{
	struct rbd_list_notify *lnotify;
	struct rbd_list_notify_box *box;
	struct mailbox_status status;
	struct rbd_user *user;
	struct rbd_error err;
	size_t i;

	if (rbd_list_get_user(list, &user) < 0)
		return -1;
	lnotify = i_new(struct rbd_list_notify, 1);
	lnotify->notify.list = list;
	lnotify->notify.mask = mask;
	lnotify->user = user;
	lnotify->watch_boxes = (mask & MAILBOX_LIST_NOTIFY_STATUS) != 0;
	hash_table_create(&lnotify->boxes, default_pool, 0, guid_128_hash,
	                  guid_128_cmp);
	lnotify->rec_pool = pool_alloconly_create("rbd list notify", 1024);
	i_array_init(&lnotify->recs, 8);

	rbd_list_notify_list_watch(lnotify);
	if (rbd_list_mailboxes(user, &lnotify->entries, &err) != RBD_OK) {
		mailbox_list_set_error(list, MAIL_ERROR_UNAVAILABLE,
		                       RBD_UNAVAILABLE_MSG);
		rbd_list_notify_deinit(&lnotify->notify);
		return -1;
	}
	for (i = 0; i < lnotify->entries->count; i++) {
		if (lnotify->entries->entries[i].nonexistent)
			continue;
		box = rbd_list_notify_box_add(lnotify,
		                              &lnotify->entries->entries[i]);
		if (lnotify->watch_boxes &&
		    rbd_list_notify_get_status(lnotify, box->name, &status) >
		            0) {
			box->status = status;
			box->have_status = TRUE;
		}
	}
	*notify_r = &lnotify->notify;
	return 0;
}

void rbd_list_notify_deinit(struct mailbox_list_notify *notify)
{
	struct rbd_list_notify *lnotify =
	        container_of(notify, struct rbd_list_notify, notify);
	struct hash_iterate_context *iter;
	struct rbd_list_notify_box *box;
	uint8_t *guid;

	iter = hash_table_iterate_init(lnotify->boxes);
	while (hash_table_iterate(iter, lnotify->boxes, &guid, &box))
		rbd_list_notify_box_free(&box);
	hash_table_iterate_deinit(&iter);
	hash_table_destroy(&lnotify->boxes);
	io_remove(&lnotify->list_io);
	if (lnotify->list_watch != NULL)
		rbd_watch_close(&lnotify->list_watch);
	timeout_remove(&lnotify->to_poll);
	if (lnotify->entries != NULL)
		rbd_mailbox_entries_free(&lnotify->entries);
	array_free(&lnotify->recs);
	pool_unref(&lnotify->rec_pool);
	i_free(lnotify);
}
