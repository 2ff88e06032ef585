/* COPY and MOVE within one RADOS namespace share the stored body: the
   copy is a reference in RADOS, taken in one guarded op per source mailbox
   at commit (rbd-save.c). Anything else is copied through a save: another
   storage, or another owner's mailboxes (a shared namespace has the same
   storage as the session's own, but its bodies are the owner's). */

#include "lib.h"
#include "mail-copy.h"
#include "rbd-mail-storage.h"

int rbd_copy(struct mail_save_context *ctx, struct mail *mail)
{
	struct mailbox *dest = ctx->transaction->box;

	if (mail->box->storage != dest->storage || mail->saving ||
	    strcmp(rbd_list_namespace(mail->box->list),
	           rbd_list_namespace(dest->list)) != 0)
		return mail_storage_copy(ctx, mail);
	rbd_save_alloc(ctx->transaction);
	rbd_save_add_copy(ctx, mail);
	return 0;
}
