/* SPDX-License-Identifier: ISC */
/*
 * auth_file.c - the users-file source ([users-file] path): a flat file of
 * "user:hash" lines, loaded into a hash table, checked on the thread pool.
 *
 * File format, one entry a line:
 *     alice@example.org:$y$j9T$...
 *     bob:{SSHA512}...:bob@example.org,b.smith@example.org
 *     # comments and blank lines are skipped
 * The optional third field lists the user's own mail addresses (for
 * [listener] sender_login_match); anything after a fourth ':' is ignored.
 * The hash is any format lib/pwhash understands; a {PLAIN} or {CLEARTEXT}
 * value cannot contain ':' (as in Dovecot's passwd-file). A line without a
 * user or a hash, an empty cleartext, a user with blanks or control characters or longer than
 * AUTH_MAX_LOGIN, and a second entry for a user are warned about
 * ("file:line: warning: ...", the format of every config warning) and
 * skipped. An entry with a hash we cannot check is kept and warned about:
 * its logins fail with reason=unsupported_hash, which tells the admin more
 * than unknown_user would.
 *
 * Matching: the login as typed must equal the file's user exactly, except
 * that the domain (after the last '@') compares case-insensitively, since DNS
 * names are case-insensitive (RFC 4343) while local parts may not be
 * (RFC 5321 2.4). "Alice@Example.ORG" finds "Alice@example.org" but not
 * "alice@example.org".
 *
 * Timing: an unknown user is checked against a dummy hash of the file's most
 * common kind, on the pool like any other check, so the time to answer does
 * not tell which users exist.
 *
 * CRAM-MD5 (RFC 2195 2) needs the cleartext: the source offers
 * AUTH_CAP_CRAM_MD5 when any entry holds a {PLAIN}/{CLEARTEXT} value, and a
 * CRAM-MD5 login for a user whose entry is hashed fails with
 * reason=mech_unavailable.
 *
 * Reasons: ok, bad_password, unknown_user, unsupported_hash,
 * mech_unavailable, internal.
 */
#include "auth_file.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/pwhash.h"
#include "../lib/threadpool.h"

#include <errno.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>

/* For an empty file: yescrypt, the default of "authrelay passwd". */
#define FILE_FALLBACK_DUMMY                                                                        \
	"$y$j9T$Vn50dtiRWUG8fnaZpo8.u.$6S.W3sl6Rw3tXKIHtzPDxpDs/WyO2EHZFzQ4WgTKbw9"
#define FILE_CRAM_DIGEST_LEN 32 /* hex of HMAC-MD5 */

struct file_entry {
	struct file_entry *next; /* hash chain */
	uint32_t key;
	unsigned line;
	char *login;
	char *hash;
	char *addresses; /* third field, checked: "a@x,b@y"; NULL if none */
};

struct file_table {
	struct file_entry **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
	bool has_cleartext;
	const char *dummy; /* an entry's hash, or FILE_FALLBACK_DUMMY */
};

/* One check on its way through the pool. Everything the pool thread reads is
 * copied here, so a reload may free the table meanwhile. */
struct file_check {
	LIST_ENTRY(file_check) entry;
	struct auth_file *src;
	struct auth_job *job;  /* the daemon's, or NULL: */
	auth_file_done_cb *cb; /* test-auth's */
	void *cb_arg;
	bool cram;
	bool known;   /* the user exists; stored is theirs, else the dummy */
	char *secret; /* password, or the client's CRAM-MD5 digest */
	size_t secret_len;
	char *challenge; /* CRAM-MD5 only */
	char *stored;
	char *identity;
	char *addresses;
	/* Set by the pool thread. */
	enum auth_result result;
	enum auth_reason reason;
};

struct auth_file {
	const struct config *cfg;
	struct threadpool *pool;
	char *path;
	struct file_table *table;
	LIST_HEAD(, file_check) checks; /* queued on the pool */
	auth_file_trace_cb *trace;      /* test-auth */
	void *trace_arg;
};

/* init() and reload() errors; valid until the next call (loop thread only). */
static char file_error[512];

static void
file_login_split(const char *login, size_t *local_len_r, const char **domain_r)
{
	const char *at = strrchr(login, '@');

	*local_len_r = at != NULL ? (size_t)(at - login) : strlen(login);
	*domain_r = at != NULL ? at + 1 : NULL;
}

/* FNV-1a over the local part as is and the domain lower-cased: equal for
 * every login file_login_equal() matches. */
static uint32_t
file_login_key(const char *login)
{
	const char *domain;
	size_t llen;
	uint32_t h = 2166136261u;

	file_login_split(login, &llen, &domain);
	for (size_t i = 0; i < llen; i++)
		h = (h ^ (unsigned char)login[i]) * 16777619u;
	if (domain != NULL) {
		h = (h ^ '@') * 16777619u;
		for (const char *p = domain; *p != '\0'; p++) {
			unsigned char c = (unsigned char)*p;
			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			h = (h ^ c) * 16777619u;
		}
	}
	return h;
}

static bool
file_login_equal(const char *a, const char *b)
{
	const char *da, *db;
	size_t la, lb;

	file_login_split(a, &la, &da);
	file_login_split(b, &lb, &db);
	if (la != lb || memcmp(a, b, la) != 0)
		return false;
	if (da == NULL || db == NULL)
		return da == db;
	return ascii_strcasecmp(da, db) == 0;
}

static struct file_entry *
file_table_find(const struct file_table *t, const char *login)
{
	uint32_t key = file_login_key(login);

	for (struct file_entry *e = t->buckets[key & (t->nbuckets - 1)]; e != NULL; e = e->next) {
		if (e->key == key && file_login_equal(e->login, login))
			return e;
	}
	return NULL;
}

static void
file_table_free(struct file_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct file_entry *e = t->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			free(e->login);
			free_secret(e->hash);
			free(e->addresses);
			free(e);
		}
	}
	free(t->buckets);
	free(t);
}

/* Kind of hash, to pick a dummy that costs what a real check costs: the
 * brace scheme or the crypt prefix and its cost parameter ("$2b$12$",
 * "$y$j9T$", "{SSHA512}"). */
static size_t
file_hash_kind_len(const char *h)
{
	const char *p;

	if (h[0] == '{') {
		p = strchr(h, '}');
		return p != NULL ? (size_t)(p - h + 1) : 0;
	}
	if (h[0] != '$')
		return 0;
	p = strchr(h + 1, '$');
	if (p == NULL)
		return 0;
	/* $y$, $2b$ and $argon2id$ carry their cost in the next field;
	 * $5$/$6$ carry it only when "rounds=" follows. */
	if (strncmp(h, "$5$", 3) == 0 || strncmp(h, "$6$", 3) == 0) {
		if (strncmp(p + 1, "rounds=", 7) != 0)
			return (size_t)(p - h + 1);
	}
	if (strncmp(h, "$argon2", 7) == 0) {
		/* $argon2id$v=19$m=..,t=..,p=..$ */
		for (int i = 0; i < 2 && p != NULL; i++)
			p = strchr(p + 1, '$');
		return p != NULL ? (size_t)(p - h + 1) : 0;
	}
	p = strchr(p + 1, '$');
	return p != NULL ? (size_t)(p - h + 1) : 0;
}

/* The first hash of the most common kind. O(n * kinds), kinds being few. */
static const char *
file_pick_dummy(const struct file_table *t)
{
	struct kind {
		const char *first;
		size_t len, count;
	} kinds[16];
	size_t nk = 0, best = 0;

	for (size_t b = 0; b < t->nbuckets; b++) {
		for (const struct file_entry *e = t->buckets[b]; e != NULL; e = e->next) {
			size_t len = file_hash_kind_len(e->hash), k;
			if (!pwhash_supported(e->hash))
				continue;
			for (k = 0; k < nk; k++) {
				if (kinds[k].len == len &&
				    strncmp(kinds[k].first, e->hash, len) == 0)
					break;
			}
			if (k == nk) {
				if (nk == AR_NELEM(kinds))
					continue;
				kinds[nk++] = (struct kind){e->hash, len, 0};
			}
			kinds[k].count++;
		}
	}
	if (nk == 0)
		return FILE_FALLBACK_DUMMY;
	for (size_t k = 1; k < nk; k++) {
		if (kinds[k].count > kinds[best].count)
			best = k;
	}
	return kinds[best].first;
}

static bool
file_user_ok(const char *user)
{
	for (const unsigned char *p = (const unsigned char *)user; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f)
			return false;
	}
	return true;
}

/* The third field: comma-separated addresses, each local@domain without
 * blanks or control characters; bad ones are warned about and left out.
 * Returns the kept ones joined by commas, or NULL. */
static char *
file_parse_addresses(const char *path, unsigned lineno, const char *field)
{
	char *out = xmalloc(strlen(field) + 1);
	size_t len = 0;
	const char *p = field;

	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		const char *at = memchr(p, '@', n);
		bool ok = n > 0 && at != NULL && at != p && at + 1 < p + n;
		for (size_t i = 0; ok && i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			ok = c > ' ' && c != 0x7f && c != '<' && c != '>';
		}
		if (ok) {
			if (len > 0)
				out[len++] = ',';
			memcpy(out + len, p, n);
			len += n;
		} else if (n > 0) {
			/* Not echoed: a cleartext password holding ':' would
			 * spill its tail into this field. */
			log_warn("%s:%u: warning: an item of the addresses field (the third) is "
			         "not an "
			         "address; left out",
			         path, lineno);
		}
		p += n;
		if (*p == ',')
			p++;
	}
	out[len] = '\0';
	if (len == 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Parse one line (NUL-terminated, newline removed) into t. */
static void
file_parse_line(struct file_table *t, const char *path, unsigned lineno, char *line,
                size_t *skipped)
{
	char *p = line, *user, *hash, *colon, *addresses = NULL;
	struct file_entry *e, *dup;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == '#')
		return;
	colon = strchr(line, ':');
	if (colon == NULL) {
		log_warn("%s:%u: warning: no ':' between user and hash; line skipped", path,
		         lineno);
		goto skip;
	}
	*colon = '\0';
	user = line;
	hash = colon + 1;
	if ((colon = strchr(hash, ':')) != NULL) {
		*colon = '\0';
		addresses = colon + 1;
		if ((colon = strchr(addresses, ':')) != NULL)
			*colon = '\0'; /* further fields: ignored */
	}
	if (*user == '\0' || !file_user_ok(user)) {
		log_warn("%s:%u: warning: empty user, or a blank or control character in it; line "
		         "skipped",
		         path, lineno);
		goto skip;
	}
	if (strlen(user) > AUTH_MAX_LOGIN) {
		log_warn("%s:%u: warning: user longer than %d bytes; line skipped", path, lineno,
		         AUTH_MAX_LOGIN);
		goto skip;
	}
	if (*hash == '\0') {
		log_warn("%s:%u: warning: empty hash; line skipped", path, lineno);
		goto skip;
	}
	if ((dup = file_table_find(t, user)) != NULL) {
		log_warn("%s:%u: warning: user already defined at line %u; line skipped", path,
		         lineno, dup->line);
		goto skip;
	}
	if (pwhash_cleartext(hash) != NULL && pwhash_cleartext(hash)[0] == '\0') {
		/* PLAIN refuses empty passwords, but CRAM-MD5 would accept
		 * an HMAC keyed with nothing. */
		log_warn("%s:%u: warning: empty cleartext password; line skipped", path, lineno);
		goto skip;
	}
	if (!pwhash_supported(hash))
		log_warn("%s:%u: warning: hash format not supported; logins of this user will fail "
		         "(reason=unsupported_hash)",
		         path, lineno);
	if (pwhash_cleartext(hash) != NULL)
		t->has_cleartext = true;

	e = xcalloc(1, sizeof(*e));
	e->login = xstrdup(user);
	e->hash = xstrdup(hash);
	e->addresses = addresses != NULL ? file_parse_addresses(path, lineno, addresses) : NULL;
	e->key = file_login_key(user);
	e->line = lineno;
	e->next = t->buckets[e->key & (t->nbuckets - 1)];
	t->buckets[e->key & (t->nbuckets - 1)] = e;
	t->count++;
	return;
skip:
	(*skipped)++;
}

static void
file_table_grow(struct file_table *t)
{
	size_t n = t->nbuckets * 2;
	struct file_entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < t->nbuckets; i++) {
		struct file_entry *e = t->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			e->next = b[e->key & (n - 1)];
			b[e->key & (n - 1)] = e;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

/* Read path into a new table, or NULL with file_error set. The file holds
 * secrets: stdio's buffer and the line buffer are ours, and wiped. */
static struct file_table *
file_load(const char *path)
{
	char iobuf[8192];
	struct file_table *t = NULL;
	struct stat st;
	char *line = NULL;
	size_t linecap = 0, skipped = 0;
	unsigned lineno = 0;
	ssize_t n;
	FILE *f;

	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(file_error, sizeof(file_error), "%s: %s", path, strerror(errno));
		return NULL;
	}
	setvbuf(f, iobuf, _IOFBF, sizeof(iobuf));
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH))
		log_warn("%s:0: warning: readable by every user, and it holds password hashes",
		         path);

	t = xcalloc(1, sizeof(*t));
	t->nbuckets = 64;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	errno = 0;
	while ((n = getline(&line, &linecap, f)) >= 0) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (memchr(line, '\0', (size_t)n) != NULL) {
			log_warn("%s:%u: warning: NUL byte in the line; line skipped", path,
			         lineno);
			skipped++;
		} else {
			file_parse_line(t, path, lineno, line, &skipped);
		}
		explicit_bzero(line, linecap);
		if (t->count > t->nbuckets)
			file_table_grow(t);
	}
	if (ferror(f)) {
		snprintf(file_error, sizeof(file_error), "%s: read error: %s", path,
		         strerror(errno != 0 ? errno : EIO));
		file_table_free(t);
		t = NULL;
	}
	if (line != NULL)
		explicit_bzero(line, linecap);
	free(line);
	fclose(f);
	explicit_bzero(iobuf, sizeof(iobuf));
	if (t == NULL)
		return NULL;

	t->dummy = file_pick_dummy(t);
	log_info("auth: users-file path=%s users=%zu skipped=%zu cram_md5=%s", path, t->count,
	         skipped, t->has_cleartext ? "yes" : "no");
	return t;
}

static bool
file_configured(const struct config *cfg)
{
	return cfg->users_file != NULL && cfg->users_file[0] != '\0';
}

static int
file_init(const struct auth_env *env, void **state_r, const char **error_r)
{
	struct auth_file *src;
	struct file_table *t = file_load(env->cfg->users_file);

	if (t == NULL) {
		*error_r = file_error;
		return -1;
	}
	src = xcalloc(1, sizeof(*src));
	src->cfg = env->cfg;
	src->pool = env->pool;
	src->path = xstrdup(env->cfg->users_file);
	src->table = t;
	LIST_INIT(&src->checks);
	*state_r = src;
	return 0;
}

static void
file_check_free(struct file_check *c)
{
	free_secret(c->challenge);
	if (c->secret != NULL) {
		explicit_bzero(c->secret, c->secret_len);
		free(c->secret);
	}
	free_secret(c->stored);
	free(c->identity);
	free(c->addresses);
	free(c);
}

/* RFC 2195 2: the digest is HMAC-MD5(secret, challenge) as 32 lower-case hex
 * digits. Returns -1 if OpenSSL cannot (MD5 disabled, as in FIPS mode). */
static int
file_cram_digest(const char *secret, const char *challenge, char hex[FILE_CRAM_DIGEST_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (HMAC(EVP_md5(), secret, (int)strlen(secret), (const unsigned char *)challenge,
	         strlen(challenge), mac, &maclen) == NULL ||
	    maclen != FILE_CRAM_DIGEST_LEN / 2)
		return -1;
	for (unsigned i = 0; i < maclen; i++) {
		hex[2 * i] = digits[mac[i] >> 4];
		hex[2 * i + 1] = digits[mac[i] & 15];
	}
	hex[FILE_CRAM_DIGEST_LEN] = '\0';
	explicit_bzero(mac, sizeof(mac));
	return 0;
}

static void
file_check_cram(struct file_check *c)
{
	const char *secret = pwhash_cleartext(c->stored);
	char mine[FILE_CRAM_DIGEST_LEN + 1];
	bool match;

	if (c->known && secret == NULL) {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_MECH_UNAVAILABLE;
		return;
	}
	/* Unknown users get the same HMAC work, against a fixed secret. */
	if (file_cram_digest(secret != NULL ? secret : "", c->challenge, mine) < 0) {
		c->result = AUTH_TEMPFAIL;
		c->reason = AUTH_REASON_INTERNAL;
		return;
	}
	/* RFC 2195 says lower case; accept what a sloppy client sends. */
	for (size_t i = 0; i < c->secret_len; i++) {
		if (c->secret[i] >= 'A' && c->secret[i] <= 'F')
			c->secret[i] += 'a' - 'A';
	}
	match = ct_equal(mine, FILE_CRAM_DIGEST_LEN, c->secret, c->secret_len);
	explicit_bzero(mine, sizeof(mine));
	if (!c->known) {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_UNKNOWN_USER;
	} else {
		c->result = match ? AUTH_OK : AUTH_FAIL;
		c->reason = match ? AUTH_REASON_OK : AUTH_REASON_BAD_PASSWORD;
	}
}

/* Pool thread: touches only c and what it copied. */
static void
file_check_work(void *arg)
{
	struct file_check *c = arg;
	enum pwhash_result r;

	if (c->cram) {
		file_check_cram(c);
		return;
	}
	r = pwhash_verify(c->secret, c->secret_len, c->stored);
	if (!c->known) {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_UNKNOWN_USER;
	} else if (r == PWHASH_MATCH) {
		c->result = AUTH_OK;
		c->reason = AUTH_REASON_OK;
	} else if (r == PWHASH_MISMATCH) {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_BAD_PASSWORD;
	} else {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_UNSUPPORTED_HASH;
	}
}

/* Loop thread. */
static void
file_check_done(void *arg)
{
	struct file_check *c = arg;
	const char *identity = c->result == AUTH_OK ? c->identity : NULL;

	LIST_REMOVE(c, entry);
	if (c->job == NULL) {
		c->cb(c->cb_arg, c->result, c->reason, identity,
		      c->result == AUTH_OK ? c->addresses : NULL);
	} else {
		const struct auth_request *req = auth_job_request(c->job);
		char user[AUTH_MAX_LOGIN * 4 + 8], sess[64];
		/* One line per check that ran (a dummy one for an unknown
		 * user): what the brute-force throttle's limits are about. */
		log_debug("s=%s file check=%s result=%s user=\"%s\"",
		          req->session[0] != '\0' ? log_escape_str(req->session, sess, sizeof(sess))
		                                  : "-",
		          c->cram ? "cram_md5" : "hash", auth_reason_name(c->reason),
		          log_escape_str(req->login, user, sizeof(user)));
		if (c->result == AUTH_OK && c->addresses != NULL)
			auth_job_set_addresses(c->job, c->addresses);
		auth_job_done(c->job, c->result, identity, c->reason);
	}
	file_check_free(c);
}

static void file_trace(const struct auth_file *src, const char *fmt, ...) AR_PRINTF(2, 3);

static void
file_trace(const struct auth_file *src, const char *fmt, ...)
{
	char line[1200];
	va_list ap;

	if (src->trace == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	src->trace(src->trace_arg, line);
}

/* The hash's kind for a trace line: "{SSHA512}", "$y$", "{PLAIN}" (never
 * the hash itself). */
static void
file_trace_entry(const struct auth_file *src, const struct file_entry *e, bool cram)
{
	char kind[40], login[AUTH_MAX_LOGIN * 4 + 8];
	size_t len = file_hash_kind_len(e->hash);

	if (e->hash[0] == '$') {
		const char *p = strchr(e->hash + 1, '$');
		len = p != NULL ? (size_t)(p - e->hash + 1) : 1;
	}
	snprintf(kind, sizeof(kind), "%.*s", (int)(len < sizeof(kind) ? len : sizeof(kind) - 1),
	         e->hash);
	file_trace(src, "entry \"%s\" at line %u: hash %s%s%s",
	           log_escape_str(e->login, login, sizeof(login)), e->line,
	           kind[0] ? kind : "(unknown kind)",
	           pwhash_supported(e->hash) ? "" : " (not supported: unsupported_hash)",
	           e->addresses != NULL ? ", with addresses" : "");
	if (cram)
		file_trace(src, "CRAM-MD5: %s",
		           pwhash_cleartext(e->hash) != NULL
		                   ? "the entry holds the cleartext it needs"
		                   : "the entry is hashed: CRAM-MD5 cannot be "
		                     "checked (mech_unavailable)");
}

static void
file_start(struct auth_file *src, const struct auth_request *req, struct auth_job *job,
           auth_file_done_cb *cb, void *cb_arg)
{
	const struct file_entry *e;
	struct file_check *c;
	bool cram = ascii_strcasecmp(req->mech, "CRAM-MD5") == 0;
	char login[AUTH_MAX_LOGIN * 4 + 8];

	c = xcalloc(1, sizeof(*c));
	c->src = src;
	c->job = job;
	c->cb = cb;
	c->cb_arg = cb_arg;
	c->result = AUTH_TEMPFAIL;
	c->reason = AUTH_REASON_INTERNAL;
	LIST_INSERT_HEAD(&src->checks, c, entry);
	file_trace(src, "users file %s: %zu users", src->path, src->table->count);
	if (!cram && ascii_strcasecmp(req->mech, "PLAIN") != 0 &&
	    ascii_strcasecmp(req->mech, "LOGIN") != 0) {
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_MECH_UNAVAILABLE;
		file_check_done(c);
		return;
	}
	if (req->secret_len == 0) {
		/* The auth server refuses these first; a source never trusts
		 * that, since "{PLAIN}" alone would match. Same for every
		 * user, so answering at once tells nothing. */
		c->result = AUTH_FAIL;
		c->reason = AUTH_REASON_BAD_PASSWORD;
		file_check_done(c);
		return;
	}
	e = file_table_find(src->table, req->login);
	if (e != NULL)
		file_trace_entry(src, e, cram);
	else
		file_trace(src, "no entry for \"%s\" (a dummy hash is checked all the same)",
		           log_escape_str(req->login, login, sizeof(login)));
	c->cram = cram;
	c->known = e != NULL;
	c->secret = xmemdup(req->secret, req->secret_len);
	c->secret_len = req->secret_len;
	c->challenge = xstrdup(req->challenge != NULL ? req->challenge : "");
	c->stored = xstrdup(e != NULL ? e->hash : src->table->dummy);
	c->identity = xstrdup(e != NULL ? e->login : req->login);
	c->addresses = e != NULL && e->addresses != NULL ? xstrdup(e->addresses) : NULL;
	if (pwhash_is_cheap(c->stored)) /* no thread hand-off for microseconds */
		threadpool_run_inline(src->pool, file_check_work, file_check_done, c);
	else
		threadpool_submit(src->pool, file_check_work, file_check_done, c);
}

static void
file_verify(void *state, struct auth_job *job)
{
	file_start(state, auth_job_request(job), job, NULL, NULL);
}

static uint32_t
file_caps(void *state)
{
	struct auth_file *src = state;

	return src->table->has_cleartext ? AUTH_CAP_CRAM_MD5 : 0;
}

static int
file_reload(void *state, const char **error_r)
{
	struct auth_file *src = state;
	struct file_table *t = file_load(src->path);

	if (t == NULL) {
		*error_r = file_error;
		return -1;
	}
	/* Checks in flight hold copies, not pointers into the old table. */
	file_table_free(src->table);
	src->table = t;
	return 0;
}

/* The auth server frees the thread pool first, so no pool thread holds a
 * check: the ones still listed never got their done callback. */
static void
file_free(void *state)
{
	struct auth_file *src = state;
	struct file_check *c;

	if (src == NULL)
		return;
	while ((c = LIST_FIRST(&src->checks)) != NULL) {
		LIST_REMOVE(c, entry);
		file_check_free(c);
	}
	file_table_free(src->table);
	free(src->path);
	free(src);
}

int
auth_file_new(const struct auth_env *env, struct auth_file **r, const char **error_r)
{
	void *state = NULL;
	int ret = file_init(env, &state, error_r);

	*r = state;
	return ret;
}

void
auth_file_free(struct auth_file *src)
{
	file_free(src);
}

void
auth_file_set_trace(struct auth_file *src, auth_file_trace_cb *cb, void *arg)
{
	src->trace = cb;
	src->trace_arg = arg;
}

void
auth_file_check(struct auth_file *src, const struct auth_request *req, auth_file_done_cb *cb,
                void *arg)
{
	file_start(src, req, NULL, cb, arg);
}

const struct auth_source_ops auth_source_file = {
        .name = "file",
        .configured = file_configured,
        .init = file_init,
        .verify = file_verify,
        .caps = file_caps,
        .reload = file_reload,
        .free = file_free,
};
