/* SPDX-License-Identifier: ISC */
/*
 * test_queue_gen.c - the queue's reference-counted config generations:
 * loading (and failing to load, leaving nothing behind), numbering, a
 * generation that lives until its last reference goes whatever the order,
 * a borrowed config that the generation never frees, and many reloads in a
 * row with old generations still held. Run under ASan (make asan) this also
 * proves no leak and no use after free.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/config.h"
#include "master/settings_registry.h"
#include "queue/queue_config.h"
#include "queue/queue_gen.h"

#define BASE                                                                                       \
	"[relay]\nlocal_domains = example.test\nclient_networks = 10.0.0.0/8\n"                    \
	"[users-file]\npath = users\n[tls]\ncert_file = cert.pem\nkey_file = key.pem\n"            \
	"[listener mx]\naddress = 127.0.0.1:2525\nrole = inbound\n"

static char cfg_path[64];

static void
write_cfg(const char *text)
{
	FILE *f = fopen(cfg_path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
	snprintf(cfg_path, sizeof(cfg_path), "/tmp/test_queue_gen.XXXXXX");
	int fd = mkstemp(cfg_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int
teardown(void **state)
{
	unlink(cfg_path);
	return 0;
}

static struct queue_gen *
load_ok(const char *text)
{
	char *errors = NULL;
	write_cfg(text);
	struct queue_gen *g = queue_gen_load(cfg_path, &errors);
	if (g == NULL)
		fail_msg("queue_gen_load: %s", errors);
	return g;
}

static void
test_load_reads_both_configs(void **state)
{
	unsigned live = queue_gen_live();
	struct queue_gen *g = load_ok(BASE "[server]\nhostname = mx.example.test\n"
	                                   "[queue]\nsmarthost = [192.0.2.1]:2525\nretry_min = 1m\n"
	                                   "[route r]\ndomains = r.test\nnexthop = [192.0.2.2]\n");
	assert_int_equal(queue_gen_live(), live + 1);
	assert_string_equal(queue_gen_config(g)->hostname, "mx.example.test");
	assert_string_equal(queue_gen_config(g)->path, cfg_path);
	const struct queue_config *qc = queue_gen_qc(g);
	assert_string_equal(qc->smarthost.host, "192.0.2.1");
	assert_int_equal(qc->smarthost.port, 2525);
	assert_int_equal(qc->retry_min, 60);
	assert_int_equal(qc->n_routes, 1);
	assert_non_null(queue_config_route(qc, "r.test"));
	queue_gen_unref(g);
	assert_int_equal(queue_gen_live(), live);
}

static void
test_load_failure_leaves_nothing(void **state)
{
	unsigned live = queue_gen_live();
	char *errors = NULL;

	/* The core config is broken. */
	write_cfg("[server]\nno_such_key = 1\n" BASE);
	assert_null(queue_gen_load(cfg_path, &errors));
	assert_non_null(errors);
	assert_non_null(strstr(errors, "no_such_key"));
	free(errors);
	errors = NULL;

	/* The core config is fine, [queue] is not: the config read so far
	 * is freed (ASan would see the leak). */
	write_cfg(BASE "[queue]\nretry_min = soon\n");
	assert_null(queue_gen_load(cfg_path, &errors));
	assert_non_null(errors);
	assert_non_null(strstr(errors, "retry_min"));
	free(errors);
	errors = NULL;

	/* No file at all. */
	assert_null(queue_gen_load("/nonexistent/authrelay.conf", &errors));
	assert_non_null(errors);
	free(errors);

	assert_int_equal(queue_gen_live(), live);
}

static void
test_numbers_increase(void **state)
{
	struct queue_gen *a = load_ok(BASE);
	struct queue_gen *b = load_ok(BASE);
	assert_int_equal(queue_gen_number(b), queue_gen_number(a) + 1);
	queue_gen_unref(a);
	struct queue_gen *c = load_ok(BASE);
	assert_int_equal(queue_gen_number(c), queue_gen_number(b) + 1);
	queue_gen_unref(c);
	queue_gen_unref(b);
}

/* The last reference frees, whoever holds it: the current config's or a
 * job's that outlived a reload. */
static void
test_last_reference_frees(void **state)
{
	unsigned live = queue_gen_live();
	struct queue_gen *g = load_ok(BASE "[queue]\nhelo_name = helo.example.test\n");
	struct queue_gen *job1 = queue_gen_ref(g);
	struct queue_gen *job2 = queue_gen_ref(g);
	assert_ptr_equal(job1, g);
	assert_ptr_equal(job2, g);

	queue_gen_unref(g); /* the reload drops the current reference */
	assert_int_equal(queue_gen_live(), live + 1);
	/* Still readable through the jobs' references. */
	assert_string_equal(queue_gen_qc(job1)->helo_name, "helo.example.test");
	queue_gen_unref(job2);
	assert_int_equal(queue_gen_live(), live + 1);
	assert_string_equal(queue_gen_qc(job1)->helo_name, "helo.example.test");
	queue_gen_unref(job1);
	assert_int_equal(queue_gen_live(), live);

	queue_gen_unref(NULL);
}

/* The master's config, borrowed by the first generation, is never freed
 * by it. */
static void
test_borrowed_config_stays_the_callers(void **state)
{
	char *errors = NULL;
	unsigned live = queue_gen_live();
	write_cfg(BASE "[queue]\nmax_connections = 7\n");
	struct config *cfg = config_load(cfg_path, &errors);
	assert_non_null(cfg);
	struct queue_config *qc = queue_config_load(cfg, &errors);
	assert_non_null(qc);

	struct queue_gen *g = queue_gen_borrow(cfg, qc);
	assert_ptr_equal(queue_gen_config(g), cfg);
	assert_ptr_equal(queue_gen_qc(g), qc);
	struct queue_gen *job = queue_gen_ref(g);
	queue_gen_unref(g);
	queue_gen_unref(job);
	assert_int_equal(queue_gen_live(), live);

	/* Still ours, still valid (ASan: no use after free, no double free). */
	assert_int_equal(qc->max_connections, 7);
	assert_string_equal(cfg->path, cfg_path);
	queue_config_free(qc);
	config_free(cfg);
}

/* What the queue does on SIGHUP, 200 times, with a job holding on to every
 * third generation across later reloads: no limit, and every generation is
 * freed once its last holder lets go. */
static void
test_many_reloads(void **state)
{
	enum { RELOADS = 200 };
	unsigned live = queue_gen_live();
	struct queue_gen *current = load_ok(BASE);
	struct queue_gen *held[RELOADS] = {0};
	char text[1024];

	for (unsigned i = 0; i < RELOADS; i++) {
		if (i % 3 == 0)
			held[i] = queue_gen_ref(current);
		snprintf(text, sizeof(text), BASE "[queue]\nmax_recipients_per_transaction = %u\n",
		         i + 1);
		struct queue_gen *next = load_ok(text);
		struct queue_gen *old = current;
		current = next;
		queue_gen_unref(old);
		assert_int_equal(queue_gen_qc(current)->max_recipients_per_transaction, i + 1);
		/* A job from two reloads ago comes back. */
		if (i >= 2 && held[i - 2] != NULL) {
			queue_gen_unref(held[i - 2]);
			held[i - 2] = NULL;
		}
	}
	for (unsigned i = 0; i < RELOADS; i++)
		queue_gen_unref(held[i]);
	assert_int_equal(queue_gen_live(), live + 1);
	queue_gen_unref(current);
	assert_int_equal(queue_gen_live(), live);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_load_reads_both_configs),
	        cmocka_unit_test(test_load_failure_leaves_nothing),
	        cmocka_unit_test(test_numbers_increase),
	        cmocka_unit_test(test_last_reference_frees),
	        cmocka_unit_test(test_borrowed_config_stays_the_callers),
	        cmocka_unit_test(test_many_reloads),
	};
	settings_registry_install(); /* every section kind for config_load() */
	return cmocka_run_group_tests(tests, setup, teardown);
}
