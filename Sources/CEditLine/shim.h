#ifndef INFEROPS_CEDITLINE_SHIM_H
#define INFEROPS_CEDITLINE_SHIM_H
#include <histedit.h>
#include <locale.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <termios.h>

// el_set, el_get and history are variadic, which Swift cannot call; these typed wrappers can be.

/// An editor command added with EL_ADDFN: returns one of the CC_ codes.
typedef unsigned char (*cedit_command)(EditLine *, wint_t);
typedef wchar_t *(*cedit_prompt)(EditLine *);

static inline int cedit_set_prompt(EditLine *e, cedit_prompt f) { return el_wset(e, EL_PROMPT, f); }
static inline int cedit_set_read_char(EditLine *e, el_rfunc_t f) { return el_wset(e, EL_GETCFN, f); }
static inline int cedit_set_client_data(EditLine *e, void *d) { return el_wset(e, EL_CLIENTDATA, d); }
static inline void *cedit_client_data(EditLine *e) {
    void *d = NULL;
    return el_wget(e, EL_CLIENTDATA, &d) == 0 ? d : NULL;
}
static inline int cedit_set_editor(EditLine *e, const char *mode) { return el_set(e, EL_EDITOR, mode); }
static inline int cedit_set_terminal(EditLine *e, const char *type) { return el_set(e, EL_TERMINAL, type); }
static inline int cedit_set_history(EditLine *e, History *h) { return el_set(e, EL_HIST, history, h); }
static inline int cedit_add_command(EditLine *e, const char *name, const char *help, cedit_command f) {
    return el_set(e, EL_ADDFN, name, help, f);
}
static inline int cedit_bind(EditLine *e, const char *key, const char *command) {
    return el_set(e, EL_BIND, key, command, NULL);
}
/// `setty -d -isig`: while a line is edited the terminal does not turn ^C, ^\ and ^Z into signals;
/// they reach the editor as keys.
static inline int cedit_keys_not_signals(EditLine *e) { return el_set(e, EL_SETTY, "-d", "-isig", NULL); }
/// Puts the terminal in editing mode (1) or back in its original mode (0).
static inline int cedit_prepare_terminal(EditLine *e, int editing) { return el_set(e, EL_PREP_TERM, editing); }
static inline int cedit_refresh(EditLine *e) { return el_set(e, EL_REFRESH); }
/// The width libedit draws for: the terminal's, or the terminal type's default when it reports none.
static inline int cedit_columns(EditLine *e) {
    int columns = 0;
    return el_get(e, EL_GETTC, "co", &columns, NULL) == 0 ? columns : 0;
}

static inline int cedit_history_set_size(History *h, int size) {
    HistEvent ev;
    return history(h, &ev, H_SETSIZE, size);
}
static inline int cedit_history_set_unique(History *h, int unique) {
    HistEvent ev;
    return history(h, &ev, H_SETUNIQUE, unique);
}
static inline int cedit_history_enter(History *h, const char *line) {
    HistEvent ev;
    return history(h, &ev, H_ENTER, line);
}
static inline int cedit_history_load(History *h, const char *path) {
    HistEvent ev;
    return history(h, &ev, H_LOAD, path);
}
static inline int cedit_history_save(History *h, FILE *file) {
    HistEvent ev;
    return history(h, &ev, H_SAVE_FP, file);
}
static inline int cedit_history_count(History *h) {
    HistEvent ev;
    return history(h, &ev, H_GETSIZE) == 0 ? ev.num : 0;
}

/// Makes the calling thread's character set UTF-8, whatever the process locale is, so libedit reads,
/// measures and writes UTF-8 on the thread that edits. Returns the locale to hand to
/// cedit_end_utf8_on_this_thread, or NULL when the system has no UTF-8 locale.
static inline locale_t cedit_use_utf8_on_this_thread(void) {
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (utf8 == (locale_t)0) utf8 = newlocale(LC_CTYPE_MASK, "en_US.UTF-8", (locale_t)0);
    if (utf8 != (locale_t)0) uselocale(utf8);
    return utf8;
}
static inline void cedit_end_utf8_on_this_thread(locale_t utf8) {
    if (utf8 == (locale_t)0) return;
    uselocale(LC_GLOBAL_LOCALE);
    freelocale(utf8);
}

/// Columns a character takes on a terminal, -1 for a control character (wcwidth, which glibc declares
/// only for X/Open programs).
extern int wcwidth(wchar_t);
static inline int cedit_character_columns(wchar_t c) { return wcwidth(c); }

/// The terminal's size as the kernel knows it (0 × 0 when it does not say).
static inline int cedit_window_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize size = {0};
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -1;
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}
#endif
