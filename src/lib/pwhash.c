/* SPDX-License-Identifier: ISC */
/*
 * pwhash.c - password verification against stored hashes, and hash making
 * for "authrelay passwd" (see pwhash.h).
 *
 * A stored value is one of:
 *   {SCHEME}data   LDAP/Dovecot style; the scheme name is case-insensitive.
 *                  {SHA} {SHA256} {SHA512} {MD5}: base64(digest);
 *                  {SSHA} {SSHA256} {SSHA512} {SMD5}: base64(digest || salt),
 *                  digest = H(password || salt), salt of 1 or more bytes (as
 *                  OpenLDAP's slappasswd and Dovecot write and read them);
 *                  {CLEARTEXT} {PLAIN}: the password itself;
 *                  {CRYPT}: a crypt(3) string as below;
 *                  {ARGON2} {ARGON2I} {ARGON2ID}: an argon2 encoded string.
 *   $argon2...$    argon2 encoded strings, checked with libargon2.
 *   $id$...        crypt(3) strings from libxcrypt, for the prefixes listed
 *                  in pwhash.h only: DES and other legacy formats are refused
 *                  because a 13-character cleartext would pass for DES.
 *
 * Everything here is reentrant (crypt_rn with a private struct crypt_data,
 * EVP one-shot digests, argon2_verify) so pool threads may call it freely.
 * Every comparison of secret-derived bytes goes through ct_equal().
 */
#include "pwhash.h"
#include "common.h"
#include "log.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

/* Digest sizes of the {SHA*}/{MD5} family. */
#define PWHASH_MAX_DIGEST 64
/* Longest salted value we decode: digest + a generous salt. */
#define PWHASH_MAX_DECODED 512

/* Salt for {SSHA512} we make: Dovecot and slappasswd use 4-8 bytes. */
#define PWHASH_SSHA_SALT_LEN 8
/* bcrypt cost for new hashes: libxcrypt's own default (5) is too cheap. */
#define PWHASH_BCRYPT_COST 12
/* argon2id for new hashes: RFC 9106 4, second recommended option. */
#define PWHASH_ARGON2_T 3
#define PWHASH_ARGON2_M_KIB 65536
#define PWHASH_ARGON2_P 1
#define PWHASH_ARGON2_SALT_LEN 16
#define PWHASH_ARGON2_HASH_LEN 32
/* Characters base64 makes of n bytes, without the NUL. */
#define PWHASH_B64_LEN(n) ((((n) + 2) / 3) * 4)

enum scheme_kind {
	SK_CLEAR,
	SK_DIGEST, /* unsalted: base64(H(pw)) */
	SK_SALTED, /* base64(H(pw || salt) || salt) */
	SK_CRYPT,  /* the rest is a crypt(3) or argon2 string */
};

struct brace_scheme {
	const char *name;
	enum scheme_kind kind;
	const char *md; /* OpenSSL digest name for SK_DIGEST / SK_SALTED */
};

static const struct brace_scheme brace_schemes[] = {
        {"CLEARTEXT", SK_CLEAR, NULL},    {"PLAIN", SK_CLEAR, NULL},
        {"SHA", SK_DIGEST, "SHA1"},       {"SHA1", SK_DIGEST, "SHA1"},
        {"SHA256", SK_DIGEST, "SHA256"},  {"SHA512", SK_DIGEST, "SHA512"},
        {"MD5", SK_DIGEST, "MD5"},        {"SSHA", SK_SALTED, "SHA1"},
        {"SSHA256", SK_SALTED, "SHA256"}, {"SSHA512", SK_SALTED, "SHA512"},
        {"SMD5", SK_SALTED, "MD5"},       {"CRYPT", SK_CRYPT, NULL},
        {"ARGON2", SK_CRYPT, NULL},       {"ARGON2I", SK_CRYPT, NULL},
        {"ARGON2ID", SK_CRYPT, NULL},
};

/* crypt(3) methods we accept (see the top of the file for why a list), with
 * the length of the hash after the last '$', so that a truncated value is
 * reported when the users file loads, not at the first login. */
static const struct {
	const char *prefix;
	size_t hash_len;
} crypt_methods[] = {
        {"$1$", 22},                             /* md5-crypt: 128 bits */
        {"$5$", 43},                             /* sha256-crypt */
        {"$6$", 86},                             /* sha512-crypt */
        {"$2a$", 53},                            /* bcrypt: 22 salt + 31 hash, no '$' between */
        {"$2b$", 53}, {"$2y$", 53}, {"$y$", 43}, /* yescrypt: 256 bits */
        {"$gy$", 43}, {"$7$", 43},               /* scrypt */
};

/* Split "{NAME}rest". Returns the scheme, or NULL when stored has no brace
 * prefix (*braced_r false, *rest_r = stored) or names one we do not know
 * (*braced_r true). */
static const struct brace_scheme *
brace_scheme(const char *stored, const char **rest_r, bool *braced_r)
{
	const char *end;
	size_t n;

	*braced_r = false;
	*rest_r = stored;
	if (stored[0] != '{')
		return NULL;
	end = strchr(stored, '}');
	if (end == NULL)
		return NULL;
	*braced_r = true;
	*rest_r = end + 1;
	n = (size_t)(end - stored - 1);
	for (size_t i = 0; i < AR_NELEM(brace_schemes); i++) {
		if (strlen(brace_schemes[i].name) == n &&
		    ascii_strncasecmp(stored + 1, brace_schemes[i].name, n) == 0)
			return &brace_schemes[i];
	}
	return NULL;
}

static argon2_type
argon2_kind(const char *s, bool *ok_r)
{
	*ok_r = true;
	if (strncmp(s, "$argon2id$", 10) == 0)
		return Argon2_id;
	if (strncmp(s, "$argon2i$", 9) == 0)
		return Argon2_i;
	if (strncmp(s, "$argon2d$", 9) == 0)
		return Argon2_d;
	*ok_r = false;
	return Argon2_id;
}

static bool
argon2_syntax_ok(const char *s)
{
	size_t dollars = 0;
	bool ok;

	argon2_kind(s, &ok);
	if (!ok)
		return false;
	for (; *s != '\0'; s++)
		dollars += *s == '$';
	/* $argon2id$v=19$m=..,t=..,p=..$salt$hash (v= is absent in 1.0). */
	return dollars == 4 || dollars == 5;
}

static bool
crypt_syntax_ok(const char *s)
{
	const char *last = strrchr(s, '$');
	size_t dollars = 0, i;
	int r;

	for (i = 0; i < AR_NELEM(crypt_methods); i++) {
		if (strncmp(s, crypt_methods[i].prefix, strlen(crypt_methods[i].prefix)) == 0)
			break;
	}
	if (i == AR_NELEM(crypt_methods))
		return false;
	/* A whole hash, not just a setting ("$6$salt"): every accepted
	 * method has at least "$id$salt$hash". */
	for (const char *p = s; *p != '\0'; p++)
		dollars += *p == '$';
	if (dollars < 3 || strlen(last + 1) != crypt_methods[i].hash_len)
		return false;
	r = crypt_checksalt(s);
	/* LEGACY is md5-crypt: weak, but users files still carry it. */
	return r == CRYPT_SALT_OK || r == CRYPT_SALT_METHOD_LEGACY || r == CRYPT_SALT_TOO_CHEAP;
}

/*
 * Strict base64 (RFC 4648 4) of s into out. EVP_DecodeBlock() alone skips
 * surrounding blanks and returns padding as zero bytes, so the input is
 * checked here first and the padding subtracted. Returns the decoded length
 * or -1.
 */
static long
pwhash_b64_decode(const char *s, unsigned char *out, size_t outsz)
{
	size_t len = strlen(s), pad = 0;
	int n;

	if (len == 0 || len % 4 != 0 || len / 4 * 3 > outsz || len > INT32_MAX)
		return -1;
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return -1;
	}
	n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad)
		return -1;
	return n - (long)pad;
}

/* H(a || b) with the named OpenSSL digest; returns its length or -1. */
static int
pwhash_digest(const char *mdname, const void *a, size_t alen, const void *b, size_t blen,
              unsigned char out[PWHASH_MAX_DIGEST])
{
	EVP_MD *md = EVP_MD_fetch(NULL, mdname, NULL);
	EVP_MD_CTX *ctx = NULL;
	unsigned int outlen = 0;
	int ret = -1;

	if (md == NULL)
		goto fail;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, a, alen) != 1 ||
	    (blen > 0 && EVP_DigestUpdate(ctx, b, blen) != 1) ||
	    EVP_DigestFinal_ex(ctx, out, &outlen) != 1)
		goto fail;
	ret = (int)outlen;
fail:
	EVP_MD_CTX_free(ctx);
	EVP_MD_free(md);
	return ret;
}

static int
pwhash_digest_size(const char *mdname)
{
	EVP_MD *md = EVP_MD_fetch(NULL, mdname, NULL);
	int n;

	if (md == NULL)
		return -1;
	n = EVP_MD_get_size(md);
	EVP_MD_free(md);
	return n;
}

static enum pwhash_result
verify_digest(const struct brace_scheme *sc, const char *password, size_t len, const char *data)
{
	unsigned char raw[PWHASH_MAX_DECODED], mine[PWHASH_MAX_DIGEST];
	int dlen = pwhash_digest_size(sc->md);
	long rlen = pwhash_b64_decode(data, raw, sizeof(raw));
	enum pwhash_result r = PWHASH_UNSUPPORTED;
	size_t saltlen;

	if (dlen <= 0 || rlen < 0)
		goto fail;
	if (sc->kind == SK_DIGEST && rlen != dlen)
		goto fail;
	if (sc->kind == SK_SALTED && rlen <= dlen)
		goto fail;
	saltlen = (size_t)(rlen - dlen);
	if (pwhash_digest(sc->md, password, len, raw + dlen, saltlen, mine) != dlen)
		goto fail;
	r = ct_equal(mine, (size_t)dlen, raw, (size_t)dlen) ? PWHASH_MATCH : PWHASH_MISMATCH;
fail:
	explicit_bzero(mine, sizeof(mine));
	explicit_bzero(raw, sizeof(raw));
	return r;
}

static enum pwhash_result
verify_argon2(const char *password, size_t len, const char *stored)
{
	bool ok;
	argon2_type t = argon2_kind(stored, &ok);
	int e;

	if (!ok || !argon2_syntax_ok(stored))
		return PWHASH_UNSUPPORTED;
	/* argon2_verify() compares in constant time itself. */
	e = argon2_verify(stored, password, len, t);
	if (e == ARGON2_OK)
		return PWHASH_MATCH;
	if (e == ARGON2_VERIFY_MISMATCH)
		return PWHASH_MISMATCH;
	/* A value it cannot decode, or parameters it refuses. */
	return PWHASH_UNSUPPORTED;
}

static enum pwhash_result
verify_crypt(const char *password, size_t len, const char *stored)
{
	struct crypt_data *cd;
	char *phrase;
	const char *out;
	enum pwhash_result r = PWHASH_UNSUPPORTED;

	if (!crypt_syntax_ok(stored))
		return PWHASH_UNSUPPORTED;
	/* crypt wants a C string; the caller's buffer need not end in NUL. */
	phrase = xmemdup(password, len);
	/* Some 32 KiB: too big for a pool thread's stack. Zeroed as crypt_rn
	 * asks before first use. */
	cd = xcalloc(1, sizeof(*cd));
	out = crypt_rn(phrase, stored, cd, (int)sizeof(*cd));
	/* NULL, or a "*"-led failure token on old libxcrypt versions. A
	 * length other than stored's means stored was no whole hash of its
	 * method (the length depends on the method and its setting, never
	 * on the password). */
	if (out != NULL && out[0] != '*' && strlen(out) == strlen(stored))
		r = ct_equal(out, strlen(out), stored, strlen(stored)) ? PWHASH_MATCH
		                                                       : PWHASH_MISMATCH;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	explicit_bzero(phrase, len);
	free(phrase);
	return r;
}

/* A crypt(3) or argon2 string, bare or after {CRYPT}/{ARGON2}. */
static enum pwhash_result
verify_modular(const char *password, size_t len, const char *s)
{
	if (strncmp(s, "$argon2", 7) == 0)
		return verify_argon2(password, len, s);
	return verify_crypt(password, len, s);
}

enum pwhash_result
pwhash_verify(const char *password, size_t len, const char *stored)
{
	const struct brace_scheme *sc;
	const char *rest;
	bool braced;

	/* RFC 4616 2: a password never holds NUL; crypt could not see past one. */
	if (memchr(password, '\0', len) != NULL)
		return PWHASH_MISMATCH;
	sc = brace_scheme(stored, &rest, &braced);
	if (!braced)
		return verify_modular(password, len, stored);
	if (sc == NULL)
		return PWHASH_UNSUPPORTED;
	switch (sc->kind) {
	case SK_CLEAR:
		return ct_equal(password, len, rest, strlen(rest)) ? PWHASH_MATCH : PWHASH_MISMATCH;
	case SK_DIGEST:
	case SK_SALTED:
		return verify_digest(sc, password, len, rest);
	case SK_CRYPT:
		return verify_modular(password, len, rest);
	}
	return PWHASH_UNSUPPORTED;
}

bool
pwhash_supported(const char *stored)
{
	const struct brace_scheme *sc;
	const char *rest;
	unsigned char raw[PWHASH_MAX_DECODED];
	bool braced, ok = false;
	long rlen;
	int dlen;

	sc = brace_scheme(stored, &rest, &braced);
	if (braced && sc == NULL)
		return false;
	if (!braced || sc->kind == SK_CRYPT)
		return strncmp(rest, "$argon2", 7) == 0 ? argon2_syntax_ok(rest)
		                                        : crypt_syntax_ok(rest);
	if (sc->kind == SK_CLEAR)
		return true;
	dlen = pwhash_digest_size(sc->md);
	rlen = pwhash_b64_decode(rest, raw, sizeof(raw));
	if (dlen > 0 && rlen >= 0)
		ok = sc->kind == SK_DIGEST ? rlen == dlen : rlen > dlen;
	explicit_bzero(raw, sizeof(raw));
	return ok;
}

bool
pwhash_is_cheap(const char *stored)
{
	const struct brace_scheme *sc;
	const char *rest;
	bool braced;

	sc = brace_scheme(stored, &rest, &braced);
	/* Cleartext, or one digest over the password and a salt of a few
	 * bytes: about a microsecond. crypt(3) and argon2 are slow on
	 * purpose. */
	return sc != NULL && sc->kind != SK_CRYPT;
}

const char *
pwhash_cleartext(const char *stored)
{
	const struct brace_scheme *sc;
	const char *rest;
	bool braced;

	sc = brace_scheme(stored, &rest, &braced);
	return sc != NULL && sc->kind == SK_CLEAR ? rest : NULL;
}

/* "$y$", "$6$", "$2b$" through libxcrypt, with OS randomness for the salt. */
static char *
make_crypt(const char *password, const char *prefix, unsigned long count, const char **error_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *out;
	char *ret = NULL;

	/* NULL rbytes: libxcrypt reads the salt from the OS itself. */
	if (crypt_gensalt_rn(prefix, count, NULL, 0, setting, (int)sizeof(setting)) == NULL) {
		*error_r = "crypt_gensalt failed (hash method not available?)";
		return NULL;
	}
	cd = xcalloc(1, sizeof(*cd));
	out = crypt_rn(password, setting, cd, (int)sizeof(*cd));
	if (out == NULL || out[0] == '*')
		*error_r = "crypt failed";
	else
		ret = xstrdup(out);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ret;
}

static char *
make_ssha512(const char *password, const char **error_r)
{
	static const char tag[] = "{SSHA512}";
	unsigned char raw[64 + PWHASH_SSHA_SALT_LEN];
	char *out;
	size_t outsz = sizeof(tag) - 1 + PWHASH_B64_LEN(sizeof(raw)) + 1;

	if (RAND_bytes(raw + 64, PWHASH_SSHA_SALT_LEN) != 1) {
		*error_r = "no random bytes for the salt";
		return NULL;
	}
	if (pwhash_digest("SHA512", password, strlen(password), raw + 64, PWHASH_SSHA_SALT_LEN,
	                  raw) != 64) {
		*error_r = "SHA512 not available";
		return NULL;
	}
	out = xmalloc(outsz);
	memcpy(out, tag, sizeof(tag) - 1);
	EVP_EncodeBlock((unsigned char *)out + sizeof(tag) - 1, raw, (int)sizeof(raw));
	explicit_bzero(raw, sizeof(raw));
	return out;
}

static char *
make_argon2id(const char *password, const char **error_r)
{
	unsigned char salt[PWHASH_ARGON2_SALT_LEN];
	size_t enclen = argon2_encodedlen(PWHASH_ARGON2_T, PWHASH_ARGON2_M_KIB, PWHASH_ARGON2_P,
	                                  sizeof(salt), PWHASH_ARGON2_HASH_LEN, Argon2_id);
	char *out;
	int e;

	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		*error_r = "no random bytes for the salt";
		return NULL;
	}
	out = xmalloc(enclen);
	e = argon2id_hash_encoded(PWHASH_ARGON2_T, PWHASH_ARGON2_M_KIB, PWHASH_ARGON2_P, password,
	                          strlen(password), salt, sizeof(salt), PWHASH_ARGON2_HASH_LEN, out,
	                          enclen);
	if (e != ARGON2_OK) {
		*error_r = argon2_error_message(e);
		free(out);
		return NULL;
	}
	return out;
}

char *
pwhash_make(const char *password, const char *scheme, const char **error_r)
{
	if (scheme == NULL || ascii_strcasecmp(scheme, "yescrypt") == 0)
		return make_crypt(password, "$y$", 0, error_r);
	if (ascii_strcasecmp(scheme, "sha512-crypt") == 0)
		return make_crypt(password, "$6$", 0, error_r);
	if (ascii_strcasecmp(scheme, "bcrypt") == 0)
		return make_crypt(password, "$2b$", PWHASH_BCRYPT_COST, error_r);
	if (ascii_strcasecmp(scheme, "ssha512") == 0)
		return make_ssha512(password, error_r);
	if (ascii_strcasecmp(scheme, "argon2id") == 0)
		return make_argon2id(password, error_r);
	*error_r = "unknown scheme (yescrypt, sha512-crypt, bcrypt, ssha512, argon2id)";
	return NULL;
}
