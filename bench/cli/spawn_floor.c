/* The fork+exec floor: run `true <i>` N times, two at a time, with posix_spawn and wait.
 * No output capture, no bookkeeping: what the machine can do at best.
 * Build: cc -O2 -o spawn_floor spawn_floor.c    Run: ./spawn_floor 5000 2 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 5000;
    long slots = argc > 2 ? atol(argv[2]) : 2;
    long started = 0, running = 0;
    char num[32];
    while (started < n || running > 0) {
        while (running < slots && started < n) {
            snprintf(num, sizeof num, "%ld", started + 1);
            char *args[] = {"true", num, NULL};
            pid_t pid;
            if (posix_spawnp(&pid, "true", NULL, NULL, args, environ) != 0) {
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
