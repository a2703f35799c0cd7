/* SPDX-License-Identifier: ISC */
/*
 * test_relay_policy.c - the relay decision on every listener role, and an
 * open-relay battery: percent hack, source routes, bang paths, quoted local
 * parts, "user@domain@other", address literals, each sent to every role,
 * authenticated and not, from inside and outside client_networks.
 *
 * Recipients go through smtp_parse_mail_args() first, as in the session,
 * and the configuration uses the real config_is_local_domain() and
 * config_is_client_network() on a struct config built here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "lib/config.h"
#include "lib/net.h"
#include "smtp/smtp_parse.h"
#include "smtpd/relay_policy.h"

static const char denied[] = "550 5.7.1 Relay access denied";
static const char need_auth[] = "530 5.7.0 Authentication required";
static const char routing[] = "550 5.7.1 Routing characters in local part not accepted";
static const char source_route[] = "550 5.7.1 Source routes not accepted";
static const char bad_rcpt[] = "501 5.1.3 Bad recipient address syntax";

struct fixture {
	struct config cfg;
	char *domains[3];
	struct cidr nets[3];
	struct listener_cfg inbound, outbound, submission;
	struct sockaddr_in inside, outside;
};

static struct fixture fx;

static void
set_v4(struct sockaddr_in *sin, const char *addr)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, &sin->sin_addr), 1);
}

static void
set_v6(struct sockaddr_in6 *sin6, const char *addr)
{
	memset(sin6, 0, sizeof(*sin6));
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
}

static int
setup(void **state)
{
	static const char *const nets[] = {"10.0.0.0/8", "2001:db8::/32", "127.0.0.1"};
	const char *error;

	memset(&fx, 0, sizeof(fx));
	fx.domains[0] = "example.test";
	fx.domains[1] = ".lists.example.test";
	fx.domains[2] = NULL;
	fx.cfg.local_domains = fx.domains;
	for (size_t i = 0; i < AR_NELEM(nets); i++)
		if (net_parse_cidr(nets[i], &fx.nets[i], &error) != 0)
			fail_msg("net_parse_cidr(%s): %s", nets[i], error);
	fx.cfg.client_networks = fx.nets;
	fx.cfg.n_client_networks = AR_NELEM(nets);
	fx.cfg.hostname = "mx.example.test";
	fx.inbound.name = "mx";
	fx.inbound.role = ROLE_INBOUND;
	fx.outbound.name = "outbound";
	fx.outbound.role = ROLE_OUTBOUND;
	fx.submission.name = "submission";
	fx.submission.role = ROLE_SUBMISSION;
	set_v4(&fx.inside, "10.1.2.3");
	set_v4(&fx.outside, "192.0.2.99");
	return 0;
}

/* Columns of the expectation strings, one character each:
 *   inbound         unauthenticated, authenticated
 *   outbound        inside client_networks (unauth, auth), outside (unauth, auth)
 *   submission      unauthenticated, authenticated
 * A accept, D relay denied, R routing characters, S source route,
 * U authentication required, P refused by the parser (501 5.1.3). */
#define N_COLUMNS 8

struct column {
	const char *name;
	const struct listener_cfg *listener;
	const struct sockaddr_in *client;
	bool authenticated;
};

static const char *
expected_reply(char code)
{
	switch (code) {
	case 'A':
		return NULL;
	case 'D':
		return denied;
	case 'R':
		return routing;
	case 'S':
		return source_route;
	case 'U':
		return need_auth;
	case 'P':
		return bad_rcpt;
	}
	fail_msg("bad code '%c' in table", code);
	return NULL;
}

static const struct {
	const char *rcpt; /* the RCPT argument */
	const char *expect;
} battery[] = {
        /* ordinary recipients */
        {"TO:<user@example.test>", "AAAADDUA"},
        {"TO:<USER@EXAMPLE.TEST>", "AAAADDUA"},
        {"TO:<user@a.lists.example.test>", "AAAADDUA"},
        {"TO:<user@lists.example.test>", "DDAADDUA"},
        {"TO:<user@other.test>", "DDAADDUA"},
        {"TO:<user@notexample.test>", "DDAADDUA"},
        {"TO:<user@example.test.other.test>", "DDAADDUA"},
        {"TO:<user@example.testx>", "DDAADDUA"},
        {"TO:<\"john doe\"@example.test>", "AAAADDUA"},
        {"TO:<j\xc3\xb6rg@example.test>", "AAAADDUA"},
        {"TO:<user@b\xc3\xbc"
         "cher.test>",
         "DDAADDUA"},
        /* RFC 5321 4.5.1: postmaster */
        {"TO:<Postmaster>", "AAAADDUA"},
        {"TO:<postmaster>", "AAAADDUA"},
        {"TO:<postmaster@example.test>", "AAAADDUA"},
        {"TO:<postmaster@other.test>", "DDAADDUA"},
        /* percent hack */
        {"TO:<user%other.test@example.test>", "RRAADDUA"},
        {"TO:<user%other.test%example.test@example.test>", "RRAADDUA"},
        {"TO:<user%example.test@other.test>", "DDAADDUA"},
        {"TO:<%@example.test>", "RRAADDUA"},
        /* source routes (RFC 5321 4.1.1.3, C) */
        {"TO:<@example.test:user@other.test>", "DDAADDUA"},
        {"TO:<@example.test,@a.lists.example.test:user@other.test>", "DDAADDUA"},
        {"TO:<@other.test:user@example.test>", "SSAADDUA"},
        {"TO:<@example.test:user@example.test>", "SSAADDUA"},
        {"TO:<@other.test:user%victim.test@example.test>", "SSAADDUA"},
        {"TO:<@example.test:user>", "PPPPPPPP"},
        {"TO:<@example.test:postmaster>", "PPPPPPPP"},
        /* bang paths */
        {"TO:<other.test!user@example.test>", "RRAADDUA"},
        {"TO:<a!b!user@example.test>", "RRAADDUA"},
        {"TO:<example.test!user@other.test>", "DDAADDUA"},
        /* quoted local parts */
        {"TO:<\"user@other.test\"@example.test>", "RRAADDUA"},
        {"TO:<\"user\\@other.test\"@example.test>", "RRAADDUA"},
        {"TO:<\"user%other.test\"@example.test>", "RRAADDUA"},
        {"TO:<\"other.test!user\"@example.test>", "RRAADDUA"},
        {"TO:<\"@other.test:user\"@example.test>", "RRAADDUA"},
        {"TO:<\"user@example.test\"@other.test>", "DDAADDUA"},
        /* user@domain@other: never parsed */
        {"TO:<user@example.test@other.test>", "PPPPPPPP"},
        {"TO:<user@other.test@example.test>", "PPPPPPPP"},
        {"TO:<user@@example.test>", "PPPPPPPP"},
        {"TO:<user@example.test>@other.test", "PPPPPPPP"},
        {"TO:<user@example.test><user@other.test>", "PPPPPPPP"},
        /* address literals: never local */
        {"TO:<user@[192.0.2.1]>", "DDAADDUA"},
        {"TO:<user@[127.0.0.1]>", "DDAADDUA"},
        {"TO:<postmaster@[192.0.2.1]>", "DDAADDUA"},
        {"TO:<user@[IPv6:2001:db8::1]>", "DDAADDUA"},
        {"TO:<user%other.test@[192.0.2.1]>", "DDAADDUA"},
        {"TO:<@example.test:user@[192.0.2.1]>", "DDAADDUA"},
        {"TO:<user@192.0.2.1>", "PPPPPPPP"},
        {"TO:<user@[example.test]>", "PPPPPPPP"},
        /* other malformed forms */
        {"TO:<>", "PPPPPPPP"},
        {"TO:<user>", "PPPPPPPP"},
        {"TO:<user@example.test.>", "PPPPPPPP"},
        {"TO:user@example.test", "PPPPPPPP"},
        {"TO:<\"user\"@other.test\"@example.test>", "PPPPPPPP"},
};

static void
test_battery(void **state)
{
	const struct column columns[N_COLUMNS] = {
	        {"inbound", &fx.inbound, &fx.outside, false},
	        {"inbound+auth", &fx.inbound, &fx.outside, true},
	        {"outbound/inside", &fx.outbound, &fx.inside, false},
	        {"outbound/inside+auth", &fx.outbound, &fx.inside, true},
	        {"outbound/outside", &fx.outbound, &fx.outside, false},
	        {"outbound/outside+auth", &fx.outbound, &fx.outside, true},
	        {"submission", &fx.submission, &fx.outside, false},
	        {"submission+auth", &fx.submission, &fx.outside, true},
	};

	for (size_t i = 0; i < AR_NELEM(battery); i++) {
		struct smtp_mail_args args;
		const char *error;
		bool parsed;

		assert_int_equal(strlen(battery[i].expect), N_COLUMNS);
		parsed =
		        smtp_parse_mail_args(battery[i].rcpt, SMTP_PARAMS_RCPT, &args, &error) == 0;
		for (size_t c = 0; c < N_COLUMNS; c++) {
			char code = battery[i].expect[c];
			const char *want = expected_reply(code), *got;
			struct relay_ctx ctx = {
			        .cfg = &fx.cfg,
			        .listener = columns[c].listener,
			        .client = (const struct sockaddr *)columns[c].client,
			        .authenticated = columns[c].authenticated,
			};

			if (code == 'P') {
				if (parsed)
					fail_msg("%s parsed as %s", battery[i].rcpt,
					         args.path.addr);
				assert_string_equal(error, bad_rcpt);
				continue;
			}
			if (!parsed)
				fail_msg("%s: %s", battery[i].rcpt, error);
			got = relay_policy_check(&ctx, &args.path);
			if (want == NULL && got != NULL)
				fail_msg("%s on %s: refused \"%s\"", battery[i].rcpt,
				         columns[c].name, got);
			if (want != NULL && (got == NULL || strcmp(got, want) != 0))
				fail_msg("%s on %s: got \"%s\", want \"%s\"", battery[i].rcpt,
				         columns[c].name, got ? got : "accept", want);
		}
	}
}

/* outbound decides on the client address alone: v4, v6, v4-mapped. */
static void
test_outbound_clients(void **state)
{
	static const struct {
		const char *addr;
		bool inside;
	} clients[] = {
	        {"10.0.0.1", true},         {"10.255.255.255", true},    {"11.0.0.1", false},
	        {"9.255.255.255", false},   {"127.0.0.1", true},         {"127.0.0.2", false},
	        {"0.0.0.0", false},         {"192.0.2.1", false},        {"2001:db8::1", true},
	        {"2001:db8:ffff::1", true}, {"2001:db9::1", false},      {"::1", false},
	        {"::ffff:10.1.2.3", true},  {"::ffff:192.0.2.1", false}, {"::10.1.2.3", false},
	        {"fe80::1", false},
	};
	struct smtp_mail_args args;
	const char *error;

	assert_int_equal(
	        smtp_parse_mail_args("TO:<user@other.test>", SMTP_PARAMS_RCPT, &args, &error), 0);
	for (size_t i = 0; i < AR_NELEM(clients); i++) {
		struct sockaddr_storage ss;
		struct relay_ctx ctx = {
		        .cfg = &fx.cfg,
		        .listener = &fx.outbound,
		        .client = (const struct sockaddr *)&ss,
		        .authenticated = false,
		};
		const char *got;

		if (strchr(clients[i].addr, ':') != NULL)
			set_v6((struct sockaddr_in6 *)&ss, clients[i].addr);
		else
			set_v4((struct sockaddr_in *)&ss, clients[i].addr);
		got = relay_policy_check(&ctx, &args.path);
		if (clients[i].inside && got != NULL)
			fail_msg("%s refused: %s", clients[i].addr, got);
		if (!clients[i].inside && (got == NULL || strcmp(got, denied) != 0))
			fail_msg("%s: %s", clients[i].addr, got ? got : "accepted");
	}

	/* an unknown client (unix socket, or none given) is never inside */
	struct sockaddr unspec = {.sa_family = AF_UNIX};
	struct relay_ctx ctx = {.cfg = &fx.cfg, .listener = &fx.outbound, .client = NULL};

	assert_string_equal(relay_policy_check(&ctx, &args.path), denied);
	ctx.client = &unspec;
	assert_string_equal(relay_policy_check(&ctx, &args.path), denied);
}

/* With no client_networks and no local_domains nothing relays anywhere,
 * except on submission after AUTH. */
static void
test_empty_config(void **state)
{
	struct config empty;
	char *no_domains[] = {NULL};
	struct smtp_mail_args args;
	const char *error;
	const struct listener_cfg *listeners[] = {&fx.inbound, &fx.outbound};

	memset(&empty, 0, sizeof(empty));
	empty.local_domains = no_domains;
	assert_int_equal(
	        smtp_parse_mail_args("TO:<user@example.test>", SMTP_PARAMS_RCPT, &args, &error), 0);
	for (size_t i = 0; i < AR_NELEM(listeners); i++) {
		for (int auth = 0; auth < 2; auth++) {
			struct relay_ctx ctx = {
			        .cfg = &empty,
			        .listener = listeners[i],
			        .client = (const struct sockaddr *)&fx.inside,
			        .authenticated = auth,
			};
			assert_string_equal(relay_policy_check(&ctx, &args.path), denied);
		}
	}
	struct relay_ctx ctx = {.cfg = &empty, .listener = &fx.submission, .authenticated = true};
	assert_null(relay_policy_check(&ctx, &args.path));
	ctx.authenticated = false;
	assert_string_equal(relay_policy_check(&ctx, &args.path), need_auth);
}

/* Paths the parser never produces for RCPT still get a safe answer. */
static void
test_hand_made_paths(void **state)
{
	struct smtp_path p;
	struct relay_ctx ctx = {
	        .cfg = &fx.cfg,
	        .listener = &fx.inbound,
	        .client = (const struct sockaddr *)&fx.inside,
	        .authenticated = true,
	};

	/* the null path */
	memset(&p, 0, sizeof(p));
	p.null = true;
	assert_string_equal(relay_policy_check(&ctx, &p), bad_rcpt);
	ctx.listener = &fx.submission;
	assert_string_equal(relay_policy_check(&ctx, &p), bad_rcpt);
	ctx.listener = &fx.outbound;
	assert_string_equal(relay_policy_check(&ctx, &p), bad_rcpt);

	/* a bare local part has no domain, so is not local */
	memset(&p, 0, sizeof(p));
	snprintf(p.local, sizeof(p.local), "user");
	snprintf(p.addr, sizeof(p.addr), "user");
	ctx.listener = &fx.inbound;
	assert_string_equal(relay_policy_check(&ctx, &p), denied);

	/* a literal that happens to be spelled like a local domain */
	memset(&p, 0, sizeof(p));
	snprintf(p.local, sizeof(p.local), "user");
	snprintf(p.domain, sizeof(p.domain), "example.test");
	p.ip_literal = true;
	assert_string_equal(relay_policy_check(&ctx, &p), denied);
	p.ip_literal = false;
	assert_null(relay_policy_check(&ctx, &p));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_battery),
	        cmocka_unit_test(test_outbound_clients),
	        cmocka_unit_test(test_empty_config),
	        cmocka_unit_test(test_hand_made_paths),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
