/* Module entry points. Dovecot 2.3 does not autoload storage drivers, so
   this module must be in the global mail_plugins (doc/design.md). */

#include "lib.h"
#include "module-dir.h"
#include "rbd-mail-storage.h"

const char *rbd_plugin_version = DOVECOT_ABI_VERSION;

void rbd_plugin_init(struct module *module);
void rbd_plugin_deinit(void);

void rbd_plugin_init(struct module *module)
{
	mail_storage_class_register(&rbd_storage);
	mailbox_list_register(&rbd_mailbox_list);
	rbd_dict_register(module);
	rbd_users_register(module);
	rbd_clock_register(module);
}

void rbd_plugin_deinit(void)
{
	rbd_clock_unregister();
	rbd_users_unregister();
	rbd_dict_unregister();
	mailbox_list_unregister(&rbd_mailbox_list);
	mail_storage_class_unregister(&rbd_storage);
	rbd_shutdown();
}
