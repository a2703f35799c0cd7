/* SPDX-License-Identifier: ISC */
/*
 * test_tls_handshake.c - a worker's TLS handshakes signed by a real key
 * process (keyproc_main() in a forked child), end to end in one event loop:
 * smtpd/tls.c's context with its stand-in key (keyproc_pkey.h), the async
 * handshake driver (tls_handshake.h) and the client (keyproc_client.h).
 *
 * RSA (PSS and PKCS #1 v1.5) and ECDSA, TLS 1.2 and 1.3; no RSA key
 * exchange; the context holds no private key; the key process killed (the
 * handshake fails within the signature timeout, the next one after its
 * restart succeeds); a key process that never answers (the deadline, and a
 * handshake freed while its job is paused: ASan sees nothing leak); twenty
 * handshakes at once.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* to look inside the stand-in key */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "keyproc/keyproc.h"
#include "keyproc/keyproc_client.h"
#include "keyproc/keyproc_keys.h"
#include "lib/config.h"
#include "lib/readiness.h"
#include "smtpd/tls.h"
#include "smtpd/tls_handshake.h"
#include "support/ut_tls.h"
#include "support/ut_tmp.h"

static char tmpdir[] = "/tmp/test_tls_handshake.XXXXXX";

struct pair {
	char crt[256], key[256];
};
static struct pair rsa_pair, ec_pair;

/* One key process and one worker side talking to it. */
struct fixture {
	struct pair *pair;
	char sock_path[108];
	int listen_fd;
	pid_t child; /* the key process, 0 when not running */
	struct event_base *base;
	struct keyproc_client *kc;
	SSL_CTX *ctx;
};

static void
write_pair(const char *name, EVP_PKEY *key, struct pair *p)
{
	X509 *x = ut_tls_cert(key, "mx.test");

	snprintf(p->crt, sizeof(p->crt), "%s/%s.crt", tmpdir, name);
	snprintf(p->key, sizeof(p->key), "%s/%s.key", tmpdir, name);
	ut_tls_write_pem(x, p->crt, key, p->key);
	X509_free(x);
}

static int
group_setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	EVP_PKEY *rsa = EVP_RSA_gen(2048), *ec = EVP_EC_gen("P-256");
	write_pair("rsa", rsa, &rsa_pair);
	write_pair("ec", ec, &ec_pair);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int
group_teardown(void **state)
{
	ut_tmp_remove(tmpdir);
	return 0;
}

/* Fork the key process on the fixture's listening socket; return once it
 * reports itself up (lib/readiness.h), its signal handling in place. */
static void
keyproc_start(struct fixture *f)
{
	int p[2];
	pid_t up = 0;
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		const char *err;
		close(p[0]);
		readiness_set_fd(p[1]);
		struct keyproc_keys *keys = keyproc_keys_new();
		if (keyproc_keys_load(keys, f->pair->crt, f->pair->key, &err) != 0)
			_exit(3);
		struct keyproc_params kp = {.keys = keys, .listen_fd = f->listen_fd, .threads = 2};
		exit(keyproc_main(&kp)); /* exit: an ASan build checks for leaks */
	}
	close(p[1]);
	assert_int_equal(read(p[0], &up, sizeof(up)), sizeof(up));
	assert_int_equal(up, pid);
	close(p[0]);
	f->child = pid;
}

/* SIGKILL: the key process dies. SIGTERM: it stops, and must exit 0 (an
 * ASan build's leak check would make that 23). */
static void
keyproc_stop(struct fixture *f, int sig)
{
	int status;
	if (f->child == 0)
		return;
	kill(f->child, sig);
	assert_int_equal(waitpid(f->child, &status, 0), f->child);
	if (sig == SIGTERM) {
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	f->child = 0;
}

/* start_keyproc false: the socket listens but nobody accepts (a key process
 * that never answers). */
static struct fixture *
fixture_new(struct pair *pair, bool start_keyproc, unsigned timeout_ms)
{
	static unsigned n;
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *err = NULL;

	f->pair = pair;
	snprintf(f->sock_path, sizeof(f->sock_path), "%s/kp%u", tmpdir, n++);
	memcpy(sun.sun_path, f->sock_path, strlen(f->sock_path) + 1);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(f->listen_fd, 64), 0);
	if (start_keyproc)
		keyproc_start(f);

	f->base = event_base_new();
	f->kc = keyproc_client_new(f->sock_path, timeout_ms);
	keyproc_client_attach(f->kc, f->base);
	struct config cfg = {.tls_cert_file = pair->crt, .tls_key_file = pair->key};
	f->ctx = tls_server_ctx_new(&cfg, f->kc, &err);
	if (f->ctx == NULL)
		fail_msg("tls_server_ctx_new: %s", err);
	return f;
}

static void
fixture_free(struct fixture *f)
{
	keyproc_stop(f, SIGTERM);
	SSL_CTX_free(f->ctx);
	keyproc_client_free(f->kc);
	event_base_free(f->base);
	close(f->listen_fd);
	unlink(f->sock_path);
	free(f);
}

/* One handshake: the server side through tls_handshake.c, the client side
 * an ordinary non-blocking OpenSSL client polled by a timer. */
struct hs {
	struct fixture *f;
	int sv[2];
	SSL *server, *client;
	struct tls_handshake *th;
	struct event *client_ev;
	bool server_done, client_done, client_failed;
	enum tls_handshake_result result;
	char error[256];
};

static unsigned hs_running;

static void
hs_done(enum tls_handshake_result result, const char *error, void *arg)
{
	struct hs *h = arg;
	h->server_done = true;
	h->result = result;
	snprintf(h->error, sizeof(h->error), "%s", error);
	tls_handshake_free(h->th); /* allowed inside the callback */
	h->th = NULL;
	if (--hs_running == 0)
		event_base_loopbreak(h->f->base);
}

static void
hs_client_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hs *h = arg;
	if (h->client_done || h->client_failed)
		return;
	int r = SSL_do_handshake(h->client);
	if (r == 1) {
		h->client_done = true;
		return;
	}
	int e = SSL_get_error(h->client, r);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
		h->client_failed = true;
		ERR_clear_error();
	}
}

/* version: TLS1_2_VERSION or TLS1_3_VERSION; sigalgs, ciphers: the
 * client's, or NULL. */
static struct hs *
hs_start(struct fixture *f, int version, const char *sigalgs, const char *ciphers,
         unsigned timeout_s)
{
	struct hs *h = calloc(1, sizeof(*h));
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());

	h->f = f;
	SSL_CTX_set_min_proto_version(cctx, version);
	SSL_CTX_set_max_proto_version(cctx, version);
	if (sigalgs != NULL)
		assert_int_equal(SSL_CTX_set1_sigalgs_list(cctx, sigalgs), 1);
	if (ciphers != NULL)
		assert_int_equal(SSL_CTX_set_cipher_list(cctx, ciphers), 1);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, h->sv), 0);
	h->client = SSL_new(cctx);
	SSL_CTX_free(cctx);
	SSL_set_fd(h->client, h->sv[1]);
	SSL_set_connect_state(h->client);
	h->server = SSL_new(f->ctx);
	SSL_set_fd(h->server, h->sv[0]);
	SSL_set_accept_state(h->server);
	h->th = tls_handshake_start(f->base, h->server, h->sv[0], f->kc, timeout_s, hs_done, h);
	h->client_ev = event_new(f->base, -1, EV_PERSIST, hs_client_cb, h);
	struct timeval ms = {0, 1000};
	event_add(h->client_ev, &ms);
	hs_running++;
	return h;
}

static void
hs_free(struct hs *h)
{
	tls_handshake_free(h->th);
	event_free(h->client_ev);
	SSL_free(h->server);
	SSL_free(h->client);
	close(h->sv[0]);
	close(h->sv[1]);
	free(h);
}

static void
run_loop(struct fixture *f, unsigned max_ms)
{
	struct timeval tv = {max_ms / 1000, (long)(max_ms % 1000) * 1000};
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

/* The session goes on over the handshake's result: data both ways. */
static void
check_data(struct hs *h)
{
	char buf[16];
	assert_int_equal(SSL_write(h->server, "220 hello", 9), 9);
	assert_int_equal(SSL_read(h->client, buf, sizeof(buf)), 9);
	assert_memory_equal(buf, "220 hello", 9);
}

static void
one_handshake(struct pair *pair, int version, const char *sigalgs, int want_sig_nid)
{
	struct fixture *f = fixture_new(pair, true, 5000);
	struct hs *h = hs_start(f, version, sigalgs, NULL, 10);
	int nid = 0;

	run_loop(f, 10000);
	assert_true(h->server_done);
	if (h->result != TLS_HANDSHAKE_OK)
		fail_msg("handshake: %s", h->error);
	run_loop(f, 20); /* the client reads the server's last flight */
	assert_true(h->client_done);
	assert_int_equal(SSL_version(h->server), version);
	assert_int_equal(SSL_get_peer_signature_type_nid(h->client, &nid), 1);
	assert_int_equal(nid, want_sig_nid);
	/* The job is over: reads and writes need no async mode. */
	assert_false(SSL_get_mode(h->server) & SSL_MODE_ASYNC);
	check_data(h);
	hs_free(h);
	fixture_free(f);
}

static void
test_ecdsa_tls13(void **state)
{
	one_handshake(&ec_pair, TLS1_3_VERSION, NULL, EVP_PKEY_EC);
}

static void
test_ecdsa_tls12(void **state)
{
	one_handshake(&ec_pair, TLS1_2_VERSION, NULL, EVP_PKEY_EC);
}

static void
test_rsa_pss_tls13(void **state)
{
	one_handshake(&rsa_pair, TLS1_3_VERSION, NULL, EVP_PKEY_RSA_PSS);
}

static void
test_rsa_pss_tls12(void **state)
{
	one_handshake(&rsa_pair, TLS1_2_VERSION, NULL, EVP_PKEY_RSA_PSS);
}

static void
test_rsa_pkcs1_tls12(void **state)
{
	one_handshake(&rsa_pair, TLS1_2_VERSION, "RSA+SHA256", EVP_PKEY_RSA);
}

/* The worker's context has the certificate's public key and nothing else. */
static void
test_context_holds_no_private_key(void **state)
{
	const BIGNUM *n, *e, *d;
	struct fixture *f = fixture_new(&rsa_pair, false, 1000);
	EVP_PKEY *pk = SSL_CTX_get0_privatekey(f->ctx);
	assert_non_null(pk);
	RSA_get0_key(EVP_PKEY_get0_RSA(pk), &n, &e, &d);
	assert_non_null(n);
	assert_null(d);
	/* Signing with it outside a handshake fails, without asking anyone. */
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[512];
	size_t sig_len = sizeof(sig);
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk), 1);
	assert_true(EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)"x", 1) <= 0);
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	fixture_free(f);

	f = fixture_new(&ec_pair, false, 1000);
	pk = SSL_CTX_get0_privatekey(f->ctx);
	assert_null(EC_KEY_get0_private_key(EVP_PKEY_get0_EC_KEY(pk)));
	fixture_free(f);
}

/* A client that offers only the RSA key exchange gets no handshake. */
static void
test_no_rsa_key_exchange(void **state)
{
	struct fixture *f = fixture_new(&rsa_pair, true, 5000);
	struct hs *h = hs_start(f, TLS1_2_VERSION, NULL, "AES128-GCM-SHA256", 10);

	run_loop(f, 10000);
	assert_true(h->server_done);
	assert_int_equal(h->result, TLS_HANDSHAKE_FAILED);
	assert_non_null(strstr(h->error, "no shared cipher"));
	hs_free(h);
	fixture_free(f);
}

/* The key process dies: the handshake waiting for it fails within the
 * signature timeout; once it is back, handshakes work again. */
static void
test_keyproc_killed_then_restarted(void **state)
{
	struct fixture *f = fixture_new(&ec_pair, true, 300);
	struct hs *h = hs_start(f, TLS1_3_VERSION, NULL, NULL, 10);

	run_loop(f, 10000);
	assert_int_equal(h->result, TLS_HANDSHAKE_OK);
	hs_free(h);

	keyproc_stop(f, SIGKILL);
	h = hs_start(f, TLS1_3_VERSION, NULL, NULL, 10);
	run_loop(f, 10000);
	assert_true(h->server_done);
	assert_int_equal(h->result, TLS_HANDSHAKE_FAILED);
	hs_free(h);

	keyproc_start(f);
	h = hs_start(f, TLS1_3_VERSION, NULL, NULL, 10);
	run_loop(f, 10000);
	assert_true(h->server_done);
	if (h->result != TLS_HANDSHAKE_OK)
		fail_msg("after the restart: %s", h->error);
	run_loop(f, 20);
	check_data(h);
	hs_free(h);
	fixture_free(f);
}

/* Nobody answers and the handshake's own deadline comes first: TIMEOUT,
 * and the paused job is unwound (ASan: nothing leaks). */
static void
test_deadline_while_waiting_for_the_signature(void **state)
{
	struct fixture *f = fixture_new(&rsa_pair, false, 60000);
	struct hs *h = hs_start(f, TLS1_3_VERSION, NULL, NULL, 1);

	run_loop(f, 5000);
	assert_true(h->server_done);
	assert_int_equal(h->result, TLS_HANDSHAKE_TIMEOUT);
	hs_free(h);
	fixture_free(f);
}

/* The session goes away while its handshake waits for the signature. */
static void
test_free_while_waiting_for_the_signature(void **state)
{
	struct fixture *f = fixture_new(&ec_pair, false, 60000);
	struct hs *h = hs_start(f, TLS1_3_VERSION, NULL, NULL, 60);

	run_loop(f, 300);
	assert_false(h->server_done);
	assert_true(SSL_waiting_for_async(h->server));
	hs_running--;
	hs_free(h); /* tls_handshake_free() unwinds the job; SSL_free() then */
	fixture_free(f);
}

/* Twenty handshakes at once, RSA (the key process's thread pool). */
static void
test_parallel_handshakes(void **state)
{
	struct fixture *f = fixture_new(&rsa_pair, true, 5000);
	struct hs *h[20];

	for (size_t i = 0; i < 20; i++)
		h[i] = hs_start(f, i % 2 ? TLS1_3_VERSION : TLS1_2_VERSION, NULL, NULL, 20);
	run_loop(f, 20000);
	run_loop(f, 20);
	for (size_t i = 0; i < 20; i++) {
		assert_true(h[i]->server_done);
		if (h[i]->result != TLS_HANDSHAKE_OK)
			fail_msg("handshake %zu: %s", i, h[i]->error);
		check_data(h[i]);
		hs_free(h[i]);
	}
	fixture_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ecdsa_tls13),
	        cmocka_unit_test(test_ecdsa_tls12),
	        cmocka_unit_test(test_rsa_pss_tls13),
	        cmocka_unit_test(test_rsa_pss_tls12),
	        cmocka_unit_test(test_rsa_pkcs1_tls12),
	        cmocka_unit_test(test_context_holds_no_private_key),
	        cmocka_unit_test(test_no_rsa_key_exchange),
	        cmocka_unit_test(test_keyproc_killed_then_restarted),
	        cmocka_unit_test(test_deadline_while_waiting_for_the_signature),
	        cmocka_unit_test(test_free_while_waiting_for_the_signature),
	        cmocka_unit_test(test_parallel_handshakes),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
