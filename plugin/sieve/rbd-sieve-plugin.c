/* lib90_sieve_rbd_plugin.so: a Pigeonhole plugin (sieve_plugins =
   sieve_rbd) that registers the Sieve storage "rbd" in each Sieve
   instance. It calls into lib20_rbd_plugin.so, which the same process has
   loaded as a mail plugin, with RTLD_GLOBAL (rbd-plugin.map). */

#include "lib.h"
#include "pigeonhole-config.h"
#include "rbd-sieve-storage.h"

const char *sieve_rbd_plugin_version = PIGEONHOLE_ABI_VERSION;

void sieve_rbd_plugin_load(struct sieve_instance *svinst, void **context);
void sieve_rbd_plugin_unload(struct sieve_instance *svinst, void *context);
void sieve_rbd_plugin_init(void);
void sieve_rbd_plugin_deinit(void);

void sieve_rbd_plugin_load(struct sieve_instance *svinst, void **context)
{
	sieve_storage_class_register(svinst, &rbd_sieve_storage);
	*context = NULL;
}

void sieve_rbd_plugin_unload(struct sieve_instance *svinst,
                             void *context ATTR_UNUSED)
{
	sieve_storage_class_unregister(svinst, &rbd_sieve_storage);
}

/* Module interface: the work is per Sieve instance, in _load. */
void sieve_rbd_plugin_init(void) {}

void sieve_rbd_plugin_deinit(void) {}
