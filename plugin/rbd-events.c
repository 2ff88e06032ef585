/* Events and log lines for the RADOS ops the core performed on behalf of
   this storage: one rbd_request_finished event per op, session totals in
   rbd_session_finished, and one log line per change between "cluster
   unavailable" and "answering again" instead of one per failed command,
   and one line per change answered NO whose outcome was unknown once the
   core has settled it. The core only records (it never calls back); what
   it recorded is drained here
   whenever a namespace's handle is looked up for the next storage call, and
   when the namespace goes away. */

#include "lib.h"
#include "ioloop.h"
#include "hex-binary.h"
#include "mail-storage-private.h"
#include "rbd-mail-storage.h"

#define RBD_EVENTS_BATCH 64

static void rbd_events_send(struct event *parent,
                            const struct rbd_op_record *rec,
                            struct rbd_op_totals *totals,
                            struct rbd_storage *storage)
{
	struct event_passthrough *e =
	        event_create_passthrough(parent)
	                ->add_category(&event_category_rbd)
	                ->set_name("rbd_request_finished")
	                ->add_str("op", rec->op)
	                ->add_str("object", rec->object)
	                ->add_str("result", rec->result)
	                ->add_int("bytes", rec->bytes)
	                ->add_int("rados_usecs", rec->usecs);

	if (rec->error != 0)
		e->add_str("error", strerror(-rec->error));
	e_debug(e->event(),
	        "RADOS %s of %s: %s, %" PRIu64 " bytes in %" PRIu64 " us",
	        rec->op, rec->object, rec->result, rec->bytes, rec->usecs);

	totals->ops++;
	totals->bytes += rec->bytes;
	totals->usecs += rec->usecs;
	if (strcmp(rec->result, "ok") != 0 &&
	    strcmp(rec->result, "not_found") != 0 &&
	    strcmp(rec->result, "conflict") != 0)
		totals->errors++;
	if (storage != NULL && storage->outage_since != 0 &&
	    strcmp(rec->result, "timeout") != 0) {
		e_info(storage->storage.event,
		       "rbd: the cluster answers again (unavailable for %ld s)",
		       (long)(ioloop_time - storage->outage_since));
		storage->outage_since = 0;
	}
}

static void rbd_events_settled(struct event *parent, struct rbd_user *user)
{
	struct rbd_settled settled[RBD_EVENTS_BATCH];
	size_t i, n;

	do {
		n = rbd_user_drain_settled(user, settled, N_ELEMENTS(settled));
		for (i = 0; i < n; i++) {
			const char *guid = binary_to_hex(
			        settled[i].mailbox_guid, RBD_GUID_SIZE);
			uint64_t modseq = settled[i].modseq;

			switch (settled[i].outcome) {
			case RBD_SETTLED_NOT_APPLIED:
				e_info(parent,
				       "rbd: mailbox %s: the change answered NO "
				       "(MODSEQ %" PRIu64 ") did not take effect",
				       guid, modseq);
				break;
			case RBD_SETTLED_UNDONE:
				e_warning(parent,
				          "rbd: mailbox %s: a change answered NO "
				          "(MODSEQ %" PRIu64 ") took effect after "
				          "all: undone",
				          guid, modseq);
				break;
			case RBD_SETTLED_UNCHECKED:
				e_error(parent,
				        "rbd: mailbox %s: a change answered NO "
				        "(MODSEQ %" PRIu64 ") could not be checked "
				        "before the session ended: it may have "
				        "taken effect",
				        guid, modseq);
				break;
			case RBD_SETTLED_KEPT:
				e_warning(parent,
				          "rbd: mailbox %s: a change answered NO "
				          "(MODSEQ %" PRIu64 ") could not be checked "
				          "before the session ended: kept for the "
				          "user's next session on this node",
				          guid, modseq);
				break;
			}
		}
	} while (n == N_ELEMENTS(settled));
}

void rbd_events_flush(struct event *parent, struct rbd_user *user,
                      struct rbd_op_totals *totals, struct rbd_storage *storage)
{
	struct rbd_op_record records[RBD_EVENTS_BATCH];
	uint64_t dropped;
	size_t i, n;

	do {
		n = rbd_user_drain_ops(user, records, N_ELEMENTS(records),
		                       &dropped);
		if (dropped > 0) {
			e_warning(parent,
			          "rbd: %" PRIu64
			          " RADOS ops were not reported "
			          "(their records were dropped)",
			          dropped);
		}
		for (i = 0; i < n; i++)
			rbd_events_send(parent, &records[i], totals, storage);
	} while (n == N_ELEMENTS(records));
	rbd_events_settled(parent, user);
}

void rbd_events_unavailable(struct rbd_storage *storage, const char *reason)
{
	if (storage->outage_since != 0) {
		e_debug(storage->storage.event, "rbd: still unavailable: %s",
		        reason);
		return;
	}
	storage->outage_since = ioloop_time;
	e_warning(storage->storage.event, "rbd: cluster unavailable: %s",
	          reason);
}

void rbd_events_session_finished(struct event *parent,
                                 const struct rbd_op_totals *totals)
{
	if (totals->ops == 0)
		return;
	e_debug(event_create_passthrough(parent)
	                ->add_category(&event_category_rbd)
	                ->set_name("rbd_session_finished")
	                ->add_int("ops", totals->ops)
	                ->add_int("op_errors", totals->errors)
	                ->add_int("bytes", totals->bytes)
	                ->add_int("rados_usecs", totals->usecs)
	                ->event(),
	        "rbd: %" PRIu64 " RADOS ops (%" PRIu64 " failed), %" PRIu64
	        " body bytes, %" PRIu64 " us waiting",
	        totals->ops, totals->errors, totals->bytes, totals->usecs);
}
