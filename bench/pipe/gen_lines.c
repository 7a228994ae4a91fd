/* Writes about SIZE bytes of text lines of varied length (0 to 199 characters) to stdout,
 * the same bytes for the same SIZE, and prints the number of lines written to stderr.
 * Usage: gen_lines SIZE */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_lines SIZE\n");
        return 2;
    }
    unsigned long long size = strtoull(argv[1], NULL, 10), written = 0, lines = 0;
    static char buf[1 << 16];
    size_t used = 0;
    uint64_t x = 88172645463325252ULL; /* xorshift64: fast and repeatable */
    while (written < size) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        unsigned len = (unsigned)(x % 200);
        if (used + len + 1 > sizeof buf) {
            fwrite(buf, 1, used, stdout);
            used = 0;
        }
        for (unsigned i = 0; i < len; i++)
            buf[used++] = (char)('a' + (x >> (i % 58)) % 26);
        buf[used++] = '\n';
        written += len + 1;
        lines++;
    }
    fwrite(buf, 1, used, stdout);
    if (fflush(stdout) != 0) {
        perror("gen_lines");
        return 1;
    }
    fprintf(stderr, "%llu\n", lines);
    return 0;
}
