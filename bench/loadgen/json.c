/* The few JSON reads and writes wsload needs: a top-level field of one of our frames (so a
 * key of the same name nested in `from`, `user` or inside a string is never taken for one),
 * and a string written as JSON. */
#include "wsload.h"

static cursor skip_ws(cursor p, cursor end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static cursor skip_string(cursor p, cursor end) { /* p at the opening quote */
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static cursor skip_value(cursor p, cursor end) {
    if (p >= end) return NULL;
    if (*p == '"') return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                if (!(p = skip_string(p, end))) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ') p++;
    return p;
}

/* The value of the object's top-level `key` (its bytes, *len long), or NULL. */
cursor field(cursor p, size_t size, const char *key, size_t *len) {
    cursor end = p + size, q = skip_ws(p, end);
    size_t key_len = strlen(key);
    if (q >= end || *q++ != '{') return NULL;
    for (;;) {
        q = skip_ws(q, end);
        cursor name = q, after = q < end && *q == '"' ? skip_string(q, end) : NULL;
        if (!after) return NULL;
        q = skip_ws(after, end);
        if (q >= end || *q++ != ':') return NULL;
        cursor value = skip_ws(q, end);
        if (!(q = skip_value(value, end))) return NULL;
        if ((size_t)(after - name) == key_len + 2 && memcmp(name + 1, key, key_len) == 0) {
            *len = (size_t)(q - value);
            return value;
        }
        q = skip_ws(q, end);
        if (q >= end || *q++ != ',') return NULL;
    }
}

int is_string(cursor value, size_t len, const char *text) {
    size_t n = strlen(text);
    return value && len == n + 2 && value[0] == '"' && memcmp(value + 1, text, n) == 0;
}

long number_field(cursor p, size_t size, const char *key) {
    size_t len;
    cursor value = field(p, size, key, &len);
    return value ? parse_number(&value, value + len) : -1;
}

/* `text` as a JSON string, or null when it is empty. */
void print_json_string(const char *text) {
    if (!text[0]) {
        printf("null");
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}
