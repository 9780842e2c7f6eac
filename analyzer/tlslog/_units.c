/* tlslog._units: the lexer of tlslog.apache_units in C (Apache 2.4 error logs, the hot path of `tlslog scan`).

Theory of operation
-------------------
`hits(block, start, end, table)` returns exactly what the pure-Python lexer `apache_units._py_hits` returns for the
same arguments (tests/analyzer/test_units_lexer.py holds them equal on generated and random input): the matches of
the regex `apache_units._AP_UNITS_IDS` over `block[start:end]`, left to right and not overlapping, as `finditer`
finds them, each with the fields the Python loop reads, and for a unit the fields of its head line as the strict
`decoders._AP24_HEAD` reads them. No semantics live here: which IDs are candidates and which of them form units is
the `table` argument (10,000 bytes indexed by the four digits after "AH0": 0 none, 1 simple, 2 other), computed in
Python from the rule tables; what a unit means, joining and counting stay in Python.

The grammar, as the regexes write it (bounded by `end`, as `finditer(block, start, end)` is):

    hit    = "AH0" DIGIT{4} ": " ;                                   the ID's digits index `table`
    unit   = hit-of-a-simple-ID body [ cont [ cont ] ] ;
    body   = [^\n]* ;
    cont   = "\n[" [^][\n]* "] [" [^][\n]* "] [pid " [^][\n]+ "] SSL Library Error: " [^\n]* ;
    head   = "[" DAY " " [A-Z][a-z]{2} " " [ 0-9][0-9] " " HH:MM:SS ["." DIGIT{1,9}] " " DIGIT{4} "] "
             "[" [[\w-]* ":"] [a-z]+ [DIGIT] "] "
             "[pid " DIGIT+ [":tid " DIGIT+] "] "
             ["(" ["-"] DIGIT+ ")" [^:[\n]* ": "] ["[" ("client" | "remote") " " [^]\n]* "] "] ;

Every repetition there stops at a byte its successor cannot start with, so the regexes never backtrack into one:
each optional part is taken if it matches where it stands, else skipped, which is what the code below does.

One tuple per hit (see HIT_FIELDS in apache_units.py):
    (p, end_of_match, idb, body, k1, r1, k2, r2, e1, e2, s, skey, frac, key, errno, errtext)
p is the ID's position; for a hit that is no unit (an "other" ID) everything after `end_of_match` but `s` is None or
-1; s is the start of the hit's line; skey is stamp + b" " + year (None when the head line is not the strict head,
ends before the ID, or holds " AH" before it); frac the float of the fraction (None without one).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_LOWER(c) ((c) >= 'a' && (c) <= 'z')
#define IS_UPPER(c) ((c) >= 'A' && (c) <= 'Z')
#define IS_WORD(c) (IS_DIGIT(c) || IS_LOWER(c) || IS_UPPER(c) || (c) == '_' || (c) == '-')

typedef const unsigned char *ptr;

typedef struct {
    Py_ssize_t a, b; /* a slice of the block; a < 0: absent */
} span;

typedef struct {
    span stamp, frac, year, key, errno_, errtext;
} head_fields;

/* b[i:] starts with the literal s (n bytes) and it ends by `end` */
static inline int lit(ptr b, Py_ssize_t i, Py_ssize_t end, const char *s, Py_ssize_t n) {
    return i + n <= end && memcmp(b + i, s, (size_t)n) == 0;
}

/* the first i in [i, end) whose byte is one of the stops (a stop given twice: two stops), or end */
static inline Py_ssize_t run_until(ptr b, Py_ssize_t i, Py_ssize_t end, unsigned char x, unsigned char y,
                                   unsigned char z) {
    while (i < end && b[i] != x && b[i] != y && b[i] != z)
        i++;
    return i;
}

/* the end of the line at b[i] (its "\n"), or end */
static inline Py_ssize_t line_end(ptr b, Py_ssize_t i, Py_ssize_t end) {
    const unsigned char *nl = i < end ? memchr(b + i, '\n', (size_t)(end - i)) : NULL;
    return nl != NULL ? nl - b : end;
}

static inline Py_ssize_t digits(ptr b, Py_ssize_t i, Py_ssize_t end) {
    while (i < end && IS_DIGIT(b[i]))
        i++;
    return i;
}

static const char *const DAYS[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

/* decoders._AP24_HEAD.match(b, s, q): 1 and the fields when it matches and ends exactly at q */
static int parse_head(ptr b, Py_ssize_t s, Py_ssize_t q, head_fields *h) {
    Py_ssize_t i = s, j;
    int d, ok = 0;
    /* "[" DAY " " [A-Z][a-z]{2} " " [ \d]\d " " \d\d:\d\d:\d\d */
    if (!lit(b, i, q, "[", 1))
        return 0;
    i++;
    if (i + 3 > q)
        return 0;
    for (d = 0; d < 7; d++)
        if (memcmp(b + i, DAYS[d], 3) == 0) {
            ok = 1;
            break;
        }
    if (!ok)
        return 0;
    h->stamp.a = i;
    i += 3;
    if (i + 16 > q)
        return 0;
    if (b[i] != ' ' || !IS_UPPER(b[i + 1]) || !IS_LOWER(b[i + 2]) || !IS_LOWER(b[i + 3]) || b[i + 4] != ' ')
        return 0;
    i += 5;
    if (!(b[i] == ' ' || IS_DIGIT(b[i])) || !IS_DIGIT(b[i + 1]) || b[i + 2] != ' ')
        return 0;
    i += 3;
    if (!IS_DIGIT(b[i]) || !IS_DIGIT(b[i + 1]) || b[i + 2] != ':' || !IS_DIGIT(b[i + 3]) || !IS_DIGIT(b[i + 4])
        || b[i + 5] != ':' || !IS_DIGIT(b[i + 6]) || !IS_DIGIT(b[i + 7]))
        return 0;
    i += 8;
    h->stamp.b = i;
    /* (\.\d{1,9})? " " (\d{4}) "] " */
    h->frac.a = -1;
    if (i < q && b[i] == '.') {
        j = digits(b, i + 1, q);
        if (j - (i + 1) >= 1 && j - (i + 1) <= 9 && j < q && b[j] == ' ') {
            h->frac.a = i;
            h->frac.b = j;
            i = j;
        }
    }
    if (!lit(b, i, q, " ", 1))
        return 0;
    i++;
    if (i + 6 > q || !IS_DIGIT(b[i]) || !IS_DIGIT(b[i + 1]) || !IS_DIGIT(b[i + 2]) || !IS_DIGIT(b[i + 3])
        || b[i + 4] != ']' || b[i + 5] != ' ')
        return 0;
    h->year.a = i;
    h->year.b = i + 4;
    i += 6;
    /* "[" ([\w-]* ":")? [a-z]+ \d? "] " */
    if (!lit(b, i, q, "[", 1))
        return 0;
    i++;
    {
        Py_ssize_t level = -1, k;
        j = i;
        while (j < q && IS_WORD(b[j]))
            j++;
        if (j < q && b[j] == ':') { /* with the module */
            k = j + 1;
            while (k < q && IS_LOWER(b[k]))
                k++;
            if (k > j + 1) {
                if (k < q && IS_DIGIT(b[k]))
                    k++;
                if (lit(b, k, q, "] ", 2))
                    level = k + 2;
            }
        }
        if (level < 0) { /* without */
            k = i;
            while (k < q && IS_LOWER(b[k]))
                k++;
            if (k == i)
                return 0;
            if (k < q && IS_DIGIT(b[k]))
                k++;
            if (!lit(b, k, q, "] ", 2))
                return 0;
            level = k + 2;
        }
        i = level;
    }
    /* "[pid " (\d+ (":tid " \d+)?) "] " */
    if (!lit(b, i, q, "[pid ", 5))
        return 0;
    i += 5;
    h->key.a = i;
    j = digits(b, i, q);
    if (j == i)
        return 0;
    if (lit(b, j, q, ":tid ", 5)) {
        Py_ssize_t k = digits(b, j + 5, q);
        if (k > j + 5)
            j = k;
    }
    if (!lit(b, j, q, "] ", 2))
        return 0;
    h->key.b = j;
    i = j + 2;
    /* ( "(" (-?\d+) ")" ([^:[\n]*) ": " )? */
    h->errno_.a = h->errtext.a = -1;
    if (i < q && b[i] == '(') {
        Py_ssize_t n0 = i + 1, n1, t1;
        if (n0 < q && b[n0] == '-')
            n1 = digits(b, n0 + 1, q), j = n0 + 1;
        else
            n1 = digits(b, n0, q), j = n0;
        if (n1 > j && n1 < q && b[n1] == ')') {
            t1 = run_until(b, n1 + 1, q, ':', '[', '\n');
            if (lit(b, t1, q, ": ", 2)) {
                h->errno_.a = n0;
                h->errno_.b = n1;
                h->errtext.a = n1 + 1;
                h->errtext.b = t1;
                i = t1 + 2;
            }
        }
    }
    /* ( "[" ("client"|"remote") " " [^]\n]* "] " )? */
    if (lit(b, i, q, "[client ", 8) || lit(b, i, q, "[remote ", 8)) {
        j = run_until(b, i + 8, q, ']', '\n', '\n'); /* [^]\n]* */
        if (lit(b, j, q, "] ", 2))
            i = j + 2;
    }
    return i == q;
}

/* a cont line at b[i] (a "\n"): its end, and the key and reason spans; -1 when there is none */
static Py_ssize_t parse_cont(ptr b, Py_ssize_t i, Py_ssize_t end, span *key, span *reason) {
    Py_ssize_t j;
    if (!lit(b, i, end, "\n[", 2))
        return -1;
    j = run_until(b, i + 2, end, ']', '[', '\n');
    if (!lit(b, j, end, "] [", 3))
        return -1;
    j = run_until(b, j + 3, end, ']', '[', '\n');
    if (!lit(b, j, end, "] [pid ", 7))
        return -1;
    key->a = j + 7;
    j = run_until(b, key->a, end, ']', '[', '\n');
    if (j == key->a)
        return -1;
    key->b = j;
    if (!lit(b, j, end, "] SSL Library Error: ", 21))
        return -1;
    reason->a = j + 21;
    reason->b = line_end(b, reason->a, end);
    return reason->b;
}

static PyObject *slice(ptr b, span sp) {
    if (sp.a < 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)b + sp.a, sp.b - sp.a);
}

/* one of the few ID digit strings: the same bytes object every time (cheaper, and hashed once) */
static PyObject *ids[10000];

static PyObject *id_bytes(ptr b, Py_ssize_t i, int n) {
    if (ids[n] == NULL) {
        ids[n] = PyBytes_FromStringAndSize((const char *)b + i, 4);
        if (ids[n] == NULL)
            return NULL;
    }
    Py_INCREF(ids[n]);
    return ids[n];
}

static PyObject *hits(PyObject *self, PyObject *args) {
    Py_buffer buf, tab;
    Py_ssize_t start, end, i, n_conts = 0;
    PyObject *out = NULL, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*nny*", &buf, &start, &end, &tab))
        return NULL;
    if (tab.len != 10000) {
        PyErr_SetString(PyExc_ValueError, "table must be 10000 bytes");
        goto done;
    }
    if (start < 0 || end > buf.len || start > end) {
        PyErr_SetString(PyExc_ValueError, "start/end out of the block");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL)
        goto done;
    {
        ptr b = (ptr)buf.buf, table = (ptr)tab.buf;
        i = start;
        while (i + 9 <= end) {
            /* "AH0" by its rare middle byte: memchr runs at memory speed where memmem costs 6x as much here
               (1.9 million hits in the benchmark log, one per line) */
            ptr hit = memchr(b + i + 1, 'H', (size_t)(end - i - 1));
            Py_ssize_t p, mend, s, be, e1 = -1, e2 = -1;
            int n, kind;
            span body, k1 = {-1, 0}, r1 = {-1, 0}, k2 = {-1, 0}, r2 = {-1, 0};
            head_fields h = {{-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}};
            PyObject *t, *skey = Py_None, *frac = Py_None;
            if (hit == NULL)
                break;
            p = hit - b - 1;
            if (p + 9 > end)
                break;
            if (b[p] != 'A' || b[p + 2] != '0') {
                i = p + 1;
                continue;
            }
            if (!(IS_DIGIT(b[p + 3]) && IS_DIGIT(b[p + 4]) && IS_DIGIT(b[p + 5]) && IS_DIGIT(b[p + 6])
                  && b[p + 7] == ':' && b[p + 8] == ' ')) {
                i = p + 3; /* "AH0" cannot start again within itself */
                continue;
            }
            n = (b[p + 3] - '0') * 1000 + (b[p + 4] - '0') * 100 + (b[p + 5] - '0') * 10 + (b[p + 6] - '0');
            kind = table[n];
            if (kind == 0) {
                i = p + 3;
                continue;
            }
            {
                const unsigned char *nl = p > start ? memrchr(b + start, '\n', (size_t)(p - start)) : NULL;
                s = nl != NULL ? (nl - b) + 1 : start;
            }
            t = PyTuple_New(16);
            if (t == NULL)
                goto fail;
            if (kind != 1) { /* an "other" ID: the hit alone */
                mend = p + 9;
                PyTuple_SET_ITEM(t, 0, PyLong_FromSsize_t(p));
                PyTuple_SET_ITEM(t, 1, PyLong_FromSsize_t(mend));
                for (int f = 2; f < 16; f++) {
                    PyObject *v = (f == 8 || f == 9) ? PyLong_FromSsize_t(-1)
                                  : f == 10        ? PyLong_FromSsize_t(s)
                                                   : (Py_INCREF(Py_None), Py_None);
                    PyTuple_SET_ITEM(t, f, v);
                }
            } else {
                body.a = p + 9;
                body.b = be = line_end(b, body.a, end);
                mend = be;
                if ((e1 = parse_cont(b, be, end, &k1, &r1)) >= 0) {
                    mend = e1;
                    n_conts++;
                    if ((e2 = parse_cont(b, e1, end, &k2, &r2)) >= 0) {
                        mend = e2;
                        n_conts++;
                    } else {
                        k2.a = r2.a = -1;
                    }
                } else {
                    k1.a = r1.a = -1;
                }
                if (parse_head(b, s, p, &h) && memmem(b + s, (size_t)(p - s), " AH", 3) == NULL) {
                    skey = PyBytes_FromStringAndSize(NULL, (h.stamp.b - h.stamp.a) + 1 + 4);
                    if (skey != NULL) {
                        char *d = PyBytes_AS_STRING(skey);
                        memcpy(d, b + h.stamp.a, (size_t)(h.stamp.b - h.stamp.a));
                        d[h.stamp.b - h.stamp.a] = ' ';
                        memcpy(d + (h.stamp.b - h.stamp.a) + 1, b + h.year.a, 4);
                    }
                    if (h.frac.a >= 0) {
                        char tmp[16];
                        memcpy(tmp, b + h.frac.a, (size_t)(h.frac.b - h.frac.a));
                        tmp[h.frac.b - h.frac.a] = 0;
                        double v = PyOS_string_to_double(tmp, NULL, NULL);
                        frac = (v == -1.0 && PyErr_Occurred()) ? NULL : PyFloat_FromDouble(v);
                    } else {
                        Py_INCREF(Py_None);
                    }
                    PyTuple_SET_ITEM(t, 13, slice(b, h.key));
                    PyTuple_SET_ITEM(t, 14, slice(b, h.errno_));
                    PyTuple_SET_ITEM(t, 15, slice(b, h.errtext));
                } else {
                    Py_INCREF(Py_None);
                    Py_INCREF(Py_None);
                    for (int f = 13; f < 16; f++) {
                        Py_INCREF(Py_None);
                        PyTuple_SET_ITEM(t, f, Py_None);
                    }
                }
                PyTuple_SET_ITEM(t, 0, PyLong_FromSsize_t(p));
                PyTuple_SET_ITEM(t, 1, PyLong_FromSsize_t(mend));
                PyTuple_SET_ITEM(t, 2, id_bytes(b, p + 3, n));
                PyTuple_SET_ITEM(t, 3, slice(b, body));
                PyTuple_SET_ITEM(t, 4, slice(b, k1));
                PyTuple_SET_ITEM(t, 5, slice(b, r1));
                PyTuple_SET_ITEM(t, 6, slice(b, k2));
                PyTuple_SET_ITEM(t, 7, slice(b, r2));
                PyTuple_SET_ITEM(t, 8, PyLong_FromSsize_t(e1));
                PyTuple_SET_ITEM(t, 9, PyLong_FromSsize_t(e2));
                PyTuple_SET_ITEM(t, 10, PyLong_FromSsize_t(s));
                PyTuple_SET_ITEM(t, 11, skey);
                PyTuple_SET_ITEM(t, 12, frac);
            }
            for (int f = 0; f < 16; f++)
                if (PyTuple_GET_ITEM(t, f) == NULL) {
                    Py_DECREF(t);
                    goto fail;
                }
            if (PyList_Append(out, t) < 0) {
                Py_DECREF(t);
                goto fail;
            }
            Py_DECREF(t);
            i = mend;
        }
    }
    result = Py_BuildValue("(On)", out, n_conts);
fail:
    Py_XDECREF(out);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&tab);
    return result;
}

static PyMethodDef methods[] = {
    {"hits", hits, METH_VARARGS,
     "hits(block, start, end, table) -> (list of hit tuples, number of library-error lines in units)\n\n"
     "The lexer of tlslog.apache_units in C: see apache_units._py_hits, which it equals."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_units",
                                    "tlslog.apache_units' lexer in C (see its docstring)", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__units(void) { return PyModule_Create(&module); }
