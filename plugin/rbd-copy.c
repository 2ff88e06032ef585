/* COPY and MOVE within one user's rbd storage share the stored body: the
   copy is a reference in RADOS, taken in one guarded op per source mailbox
   at commit (rbd-save.c). Anything else is copied through a save. */

#include "lib.h"
#include "mail-copy.h"
#include "rbd-mail-storage.h"

int rbd_copy(struct mail_save_context *ctx, struct mail *mail)
{
	struct mailbox *dest = ctx->transaction->box;

	if (mail->box->storage != dest->storage || mail->saving)
		return mail_storage_copy(ctx, mail);
	rbd_save_alloc(ctx->transaction);
	rbd_save_add_copy(ctx, mail);
	return 0;
}
