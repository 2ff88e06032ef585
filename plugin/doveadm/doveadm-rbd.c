/* doveadm rbd: stat, ls, check, gc, rebuild for users on the rbd storage.

   Like Dovecot's own doveadm plugins for mail plugins (doveadm-quota), this
   module calls into lib20_rbd_plugin.so, which doveadm loads first from
   mail_plugins; without it this module is skipped ("Try to set
   mail_plugins=rbd"). It uses the storage's own connection and handles, so
   the core and its librados connection exist once per process. */

#include "lib.h"
#include "array.h"
#include "hex-binary.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "module-dir.h"
#include "doveadm-mail.h"
#include "doveadm-mailbox-list-iter.h"
#include "doveadm-print.h"
#include "rbd-mail-storage.h"

#define RBD_RECORD_PAGE 10000

const char *doveadm_rbd_plugin_version = DOVECOT_ABI_VERSION;

void doveadm_rbd_plugin_init(struct module *module);
void doveadm_rbd_plugin_deinit(void);

struct rbd_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	struct mail_search_args *search_args;
	/* The columns of commands that print one plain row per result. */
	const char *const *headers;
	bool repair;
};

static const char *const rbd_check_headers[] = {"problem", "detail", "state",
                                                NULL};
static const char *const rbd_gc_headers[] = {"scanned", "reclaimed", "in-grace",
                                             "indexes-reclaimed", NULL};
static const char *const rbd_rebuild_headers[] = {"mailboxes", "messages",
                                                  NULL};

static void cmd_rbd_headers_init(struct doveadm_mail_cmd_context *_ctx,
                                 const char *const args[] ATTR_UNUSED)
{
	struct rbd_cmd_context *ctx =
	        container_of(_ctx, struct rbd_cmd_context, ctx);
	const char *const *name;

	for (name = ctx->headers; *name != NULL; name++)
		doveadm_print_header_simple(*name);
}

static const char *rbd_guid_hex(const uint8_t guid[RBD_GUID_SIZE])
{
	return binary_to_hex(guid, RBD_GUID_SIZE);
}

static void rbd_cmd_failed(struct doveadm_mail_cmd_context *ctx,
                           const char *what, const struct rbd_error *err)
{
	i_error("%s: %s", what, err->message);
	doveadm_mail_failed_error(ctx, err->code == RBD_ERR_NOT_FOUND
	                                       ? MAIL_ERROR_NOTFOUND
	                                       : MAIL_ERROR_TEMP);
}

/* The user's rbd namespace handle (opening it if this process has not yet),
   or -1 with the failure reported. */
static int rbd_cmd_get_user(struct doveadm_mail_cmd_context *ctx,
                            struct mail_user *user, struct rbd_user **user_r)
{
	struct mail_namespace *ns;
	struct mail_storage *storage;

	for (ns = user->namespaces; ns != NULL; ns = ns->next) {
		storage = mail_namespace_get_default_storage(ns);
		/* Not another owner's mailboxes (a shared namespace). */
		if (strcmp(storage->name, RBD_STORAGE_NAME) != 0 ||
		    ns->owner != user)
			continue;
		if (rbd_list_get_user(ns->list, user_r) == 0)
			return 0;
		i_error("%s",
		        mailbox_list_get_last_internal_error(ns->list, NULL));
		doveadm_mail_failed_list(ctx, ns->list);
		return -1;
	}
	i_error("User %s has no rbd namespace", user->username);
	doveadm_mail_failed_error(ctx, MAIL_ERROR_NOTPOSSIBLE);
	return -1;
}

/* Index and stored body objects of one mailbox (a striped body's chunk
   objects are not counted apart). */
static int rbd_stat_objects(struct rbd_index *index, uint64_t *objects_r,
                            struct rbd_error *err)
{
	struct rbd_records *records;
	uint32_t after = 0;
	size_t i, count;

	*objects_r = 1;
	do {
		if (rbd_index_list_records(index, after, RBD_RECORD_PAGE,
		                           &records, err) != RBD_OK)
			return -1;
		for (i = 0; i < records->count; i++) {
			if (records->records[i].inline_body == 0)
				(*objects_r)++;
		}
		count = records->count;
		if (count > 0)
			after = records->records[count - 1].uid;
		rbd_records_free(&records);
	} while (count == RBD_RECORD_PAGE);
	return 0;
}

static int rbd_stat_mailbox(struct doveadm_mail_cmd_context *ctx,
                            struct mail_user *user,
                            const struct mailbox_info *info)
{
	struct rbd_index_status status;
	struct rbd_index_keys keys;
	struct rbd_mailbox *mbox;
	struct rbd_error err;
	struct mailbox *box;
	uint64_t objects;
	int ret = 0;

	box = doveadm_mailbox_find(user, info->vname);
	if (strcmp(box->storage->name, RBD_STORAGE_NAME) != 0) {
		mailbox_free(&box);
		return 0;
	}
	if (mailbox_open(box) < 0) {
		i_error("Mailbox %s: %s", info->vname,
		        mailbox_get_last_internal_error(box, NULL));
		doveadm_mail_failed_mailbox(ctx, box);
		mailbox_free(&box);
		return -1;
	}
	mbox = RBD_MAILBOX(box);
	if (rbd_index_get_status(mbox->index, &status, &err) != RBD_OK ||
	    rbd_stat_objects(mbox->index, &objects, &err) < 0 ||
	    rbd_index_count_keys(mbox->index, &keys, &err) != RBD_OK) {
		rbd_cmd_failed(ctx, info->vname, &err);
		ret = -1;
	} else {
		doveadm_print(info->vname);
		doveadm_print(rbd_guid_hex(mbox->guid));
		doveadm_print_num(status.messages);
		doveadm_print_num(status.physical_size);
		doveadm_print_num(status.uidnext);
		doveadm_print_num(status.highest_modseq);
		doveadm_print_num(objects + keys.shards);
		doveadm_print_num(keys.total);
		doveadm_print_num(keys.changes);
		doveadm_print_num(keys.shards);
		doveadm_print_num(keys.largest_shard_keys);
	}
	mailbox_free(&box);
	return ret;
}

static int cmd_rbd_stat_run(struct doveadm_mail_cmd_context *_ctx,
                            struct mail_user *user)
{
	struct rbd_cmd_context *ctx =
	        container_of(_ctx, struct rbd_cmd_context, ctx);
	struct doveadm_mailbox_list_iter *iter;
	const struct mailbox_info *info;
	int ret = 0;

	iter = doveadm_mailbox_list_iter_init(
	        _ctx, user, ctx->search_args,
	        MAILBOX_LIST_ITER_NO_AUTO_BOXES |
	                MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	while ((info = doveadm_mailbox_list_iter_next(iter)) != NULL)
		T_BEGIN
		{
			if (rbd_stat_mailbox(_ctx, user, info) < 0)
				ret = -1;
		}
	T_END;
	if (doveadm_mailbox_list_iter_deinit(&iter) < 0)
		ret = -1;
	return ret;
}

static void cmd_rbd_stat_init(struct doveadm_mail_cmd_context *_ctx,
                              const char *const args[])
{
	struct rbd_cmd_context *ctx =
	        container_of(_ctx, struct rbd_cmd_context, ctx);
	static const char *const all[] = {"*", NULL};

	ctx->search_args = doveadm_mail_mailbox_search_args_build(
	        args[0] == NULL ? all : args);
	doveadm_print_header("mailbox", "mailbox",
	                     DOVEADM_PRINT_HEADER_FLAG_HIDE_TITLE);
	doveadm_print_header_simple("guid");
	doveadm_print_header_simple("messages");
	doveadm_print_header_simple("bytes");
	doveadm_print_header_simple("uidnext");
	doveadm_print_header_simple("highestmodseq");
	doveadm_print_header_simple("objects");
	doveadm_print_header_simple("omap-keys");
	doveadm_print_header_simple("changelog");
	doveadm_print_header_simple("shards");
	doveadm_print_header_simple("shard-keys");
}

static void cmd_rbd_deinit(struct doveadm_mail_cmd_context *_ctx)
{
	struct rbd_cmd_context *ctx =
	        container_of(_ctx, struct rbd_cmd_context, ctx);

	if (ctx->search_args != NULL)
		mail_search_args_unref(&ctx->search_args);
}

static int cmd_rbd_ls_run(struct doveadm_mail_cmd_context *ctx,
                          struct mail_user *user)
{
	struct rbd_objects *objects;
	struct rbd_user *ruser;
	struct rbd_error err;
	size_t i;

	if (rbd_cmd_get_user(ctx, user, &ruser) < 0)
		return -1;
	if (rbd_user_list_objects(ruser, &objects, &err) != RBD_OK) {
		rbd_cmd_failed(ctx, "rbd ls", &err);
		return -1;
	}
	for (i = 0; i < objects->count; i++) {
		doveadm_print(objects->objects[i].pool);
		doveadm_print(objects->objects[i].name);
		doveadm_print_num(objects->objects[i].size);
		doveadm_print(objects->objects[i].kind);
	}
	rbd_objects_free(&objects);
	return 0;
}

static void cmd_rbd_ls_init(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
                            const char *const args[] ATTR_UNUSED)
{
	doveadm_print_header_simple("pool");
	doveadm_print_header_simple("object");
	doveadm_print_header("size", "size",
	                     DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY);
	doveadm_print_header_simple("kind");
}

static const char *rbd_problem_kind_name(enum rbd_problem_kind kind)
{
	switch (kind) {
	case RBD_PROBLEM_MISSING_BODY:
		return "missing-body";
	case RBD_PROBLEM_WRONG_COUNTERS:
		return "wrong-counters";
	case RBD_PROBLEM_UNREFERENCED_BODY:
		return "unreferenced-body";
	}
	i_unreached();
}

static int cmd_rbd_check_run(struct doveadm_mail_cmd_context *_ctx,
                             struct mail_user *user)
{
	struct rbd_cmd_context *ctx =
	        container_of(_ctx, struct rbd_cmd_context, ctx);
	struct rbd_storage *storage;
	struct rbd_problems *problems;
	const struct rbd_problem *p;
	struct rbd_user *ruser;
	struct rbd_error err;
	size_t i;

	if (rbd_cmd_get_user(_ctx, user, &ruser) < 0)
		return -1;
	storage = RBD_STORAGE(
	        mail_namespace_get_default_storage(user->namespaces));
	if (rbd_user_check(ruser, ctx->repair ? 1 : 0,
	                   rbd_config_gc_grace(storage->config), &problems,
	                   &err) != RBD_OK) {
		rbd_cmd_failed(_ctx, "rbd check", &err);
		return -1;
	}
	for (i = 0; i < problems->count; i++) {
		p = &problems->problems[i];
		doveadm_print(rbd_problem_kind_name(p->kind));
		doveadm_print(p->detail);
		doveadm_print(p->repaired != 0 ? "repaired" : "");
	}
	/* Like doveadm's other checks: unrepaired problems fail the command,
	   so scripts and monitoring notice. */
	for (i = 0; i < problems->count; i++) {
		if (problems->problems[i].repaired == 0) {
			doveadm_mail_failed_error(_ctx, MAIL_ERROR_NOTPOSSIBLE);
			break;
		}
	}
	rbd_problems_free(&problems);
	return 0;
}

static bool cmd_rbd_check_parse_arg(struct doveadm_mail_cmd_context *_ctx,
                                    int c)
{
	struct rbd_cmd_context *ctx =
	        container_of(_ctx, struct rbd_cmd_context, ctx);

	if (c != 'r')
		return FALSE;
	ctx->repair = TRUE;
	return TRUE;
}

static int cmd_rbd_gc_run(struct doveadm_mail_cmd_context *ctx,
                          struct mail_user *user)
{
	struct rbd_storage *storage;
	struct rbd_gc_stats stats;
	struct rbd_user *ruser;
	struct rbd_error err;

	if (rbd_cmd_get_user(ctx, user, &ruser) < 0)
		return -1;
	storage = RBD_STORAGE(
	        mail_namespace_get_default_storage(user->namespaces));
	if (rbd_user_gc(ruser, rbd_config_gc_grace(storage->config), &stats,
	                &err) != RBD_OK) {
		rbd_cmd_failed(ctx, "rbd gc", &err);
		return -1;
	}
	doveadm_print_num(stats.bodies_scanned);
	doveadm_print_num(stats.bodies_reclaimed);
	doveadm_print_num(stats.bodies_in_grace);
	doveadm_print_num(stats.indexes_reclaimed);
	return 0;
}

static int cmd_rbd_rebuild_run(struct doveadm_mail_cmd_context *ctx,
                               struct mail_user *user)
{
	struct rbd_rebuild_stats stats;
	struct rbd_user *ruser;
	struct rbd_error err;

	if (rbd_cmd_get_user(ctx, user, &ruser) < 0)
		return -1;
	if (rbd_user_rebuild(ruser, &stats, &err) != RBD_OK) {
		rbd_cmd_failed(ctx, "rbd rebuild", &err);
		return -1;
	}
	doveadm_print_num(stats.mailboxes_recreated);
	doveadm_print_num(stats.messages_recovered);
	return 0;
}

/* `headers`: the plain columns cmd_rbd_headers_init prints, or NULL when
   `init` prints its own. */
static struct doveadm_mail_cmd_context *rbd_cmd_alloc(
        int (*run)(struct doveadm_mail_cmd_context *, struct mail_user *),
        void (*init)(struct doveadm_mail_cmd_context *, const char *const[]),
        const char *const *headers)
{
	struct rbd_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct rbd_cmd_context);
	ctx->ctx.v.run = run;
	ctx->ctx.v.init = init;
	ctx->ctx.v.deinit = cmd_rbd_deinit;
	ctx->headers = headers;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

static struct doveadm_mail_cmd_context *cmd_rbd_stat_alloc(void)
{
	return rbd_cmd_alloc(cmd_rbd_stat_run, cmd_rbd_stat_init, NULL);
}

static struct doveadm_mail_cmd_context *cmd_rbd_ls_alloc(void)
{
	return rbd_cmd_alloc(cmd_rbd_ls_run, cmd_rbd_ls_init, NULL);
}

static struct doveadm_mail_cmd_context *cmd_rbd_check_alloc(void)
{
	struct doveadm_mail_cmd_context *ctx;

	ctx = rbd_cmd_alloc(cmd_rbd_check_run, cmd_rbd_headers_init,
	                    rbd_check_headers);
	ctx->getopt_args = "r";
	ctx->v.parse_arg = cmd_rbd_check_parse_arg;
	return ctx;
}

static struct doveadm_mail_cmd_context *cmd_rbd_gc_alloc(void)
{
	return rbd_cmd_alloc(cmd_rbd_gc_run, cmd_rbd_headers_init,
	                     rbd_gc_headers);
}

static struct doveadm_mail_cmd_context *cmd_rbd_rebuild_alloc(void)
{
	return rbd_cmd_alloc(cmd_rbd_rebuild_run, cmd_rbd_headers_init,
	                     rbd_rebuild_headers);
}

static struct doveadm_cmd_ver2 rbd_commands[] = {
        {
                .name = "rbd stat",
                .mail_cmd = cmd_rbd_stat_alloc,
                .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[<mailbox mask> [...]]",
                DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON
                        DOVEADM_CMD_PARAM('\0', "mailbox-mask", CMD_PARAM_ARRAY,
                                          CMD_PARAM_FLAG_POSITIONAL)
                                DOVEADM_CMD_PARAMS_END,
        },
        {
                .name = "rbd ls",
                .mail_cmd = cmd_rbd_ls_alloc,
                .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
                DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON
                        DOVEADM_CMD_PARAMS_END,
        },
        {
                .name = "rbd check",
                .mail_cmd = cmd_rbd_check_alloc,
                .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[--repair]",
                DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON
                        DOVEADM_CMD_PARAM('r', "repair", CMD_PARAM_BOOL, 0)
                                DOVEADM_CMD_PARAMS_END,
        },
        {
                .name = "rbd rebuild",
                .mail_cmd = cmd_rbd_rebuild_alloc,
                .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
                DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON
                        DOVEADM_CMD_PARAMS_END,
        },
        {
                .name = "rbd gc",
                .mail_cmd = cmd_rbd_gc_alloc,
                .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
                DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON
                        DOVEADM_CMD_PARAMS_END,
        },
};

void doveadm_rbd_plugin_init(struct module *module ATTR_UNUSED)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(rbd_commands); i++)
		doveadm_cmd_register_ver2(&rbd_commands[i]);
}

void doveadm_rbd_plugin_deinit(void)
{
}
