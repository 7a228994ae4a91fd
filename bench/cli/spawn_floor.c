/* The fork+exec floor: run `PROG <i>` N times, SLOTS at a time, with posix_spawn and wait.
 * No output capture, no bookkeeping: what the machine can do at best.
 * Build: cc -O2 -o spawn_floor spawn_floor.c    Run: ./spawn_floor 5000 2 [PROG]  (PROG defaults to `true`, searched on PATH) */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 5000;
    long slots = argc > 2 ? atol(argv[2]) : 2;
    char *prog = argc > 3 ? argv[3] : "true";
    long started = 0, running = 0;
    char num[32];
    while (started < n || running > 0) {
        while (running < slots && started < n) {
            snprintf(num, sizeof num, "%ld", started + 1);
            char *args[] = {prog, num, NULL};
            pid_t pid;
            if (posix_spawnp(&pid, prog, NULL, NULL, args, environ) != 0) {
                perror("posix_spawnp");
                return 1;
            }
            started++;
            running++;
        }
        int status;
        if (wait(&status) > 0) running--;
    }
    return 0;
}
