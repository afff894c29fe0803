// Command backfill measures a first backfill: N contacts on each side, none
// linked, synced in one pass. It reports the wall time and the sync
// process's peak memory. The fake CRMs run in a child process, so that
// their records do not count against the sync's memory.
//
//	go run ./bench/backfill -n 10000,50000,100000,200000
//
// The fakes have no rate limits here: the figure is the sync's own cost
// (streaming page by page), not the APIs' pacing. Wall time includes the
// fakes' work (their searches and lookups scan their records, so they grow
// faster than linearly); "sync CPU" is the sync process's own CPU time.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/sqlite"
)

func main() {
	sizes := flag.String("n", "10000,50000,100000,200000", "contacts per side, comma-separated")
	serve := flag.Int("serve-fakes", 0, "internal: serve both fakes seeded with N contacts each")
	flag.Parse()
	if *serve > 0 {
		if err := serveFakes(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "backfill: fakes:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Println("| contacts per side | records written | wall | wall per 10k records | sync CPU per 10k records | peak heap in use | peak RSS |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "backfill: bad size %q\n", s)
			os.Exit(2)
		}
		if err := measure(n); err != nil {
			fmt.Fprintln(os.Stderr, "backfill:", err)
			os.Exit(1)
		}
	}
}

// measure runs one backfill of n contacts a side in a fresh child process
// (so each size starts with a fresh heap) and prints its row.
func measure(n int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// The measuring is done by a second child, so that peak RSS is per size.
	if os.Getenv("CRMSYNC_BACKFILL_CHILD") != "1" {
		cmd := exec.Command(self, "-n", strconv.Itoa(n))
		cmd.Env = append(os.Environ(), "CRMSYNC_BACKFILL_CHILD=1")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("size %d: %w", n, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| contacts") {
				fmt.Println(line)
			}
		}
		return nil
	}

	fakes := exec.Command(self, "-serve-fakes", strconv.Itoa(n))
	fakes.Stderr = os.Stderr
	stdout, err := fakes.StdoutPipe()
	if err != nil {
		return err
	}
	if err := fakes.Start(); err != nil {
		return err
	}
	defer func() { fakes.Process.Kill(); fakes.Wait() }()
	vars := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		if k == "READY" {
			break
		}
		vars[k] = v
	}
	go io.Copy(io.Discard, stdout)

	unlimited, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 16})
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	hc, err := hubspot.New(hubspot.Config{Token: vars["HUBSPOT_TOKEN"], BaseURL: vars["HUBSPOT_BASE_URL"], HTTPClient: httpc,
		Limiter: unlimited, SearchLimiter: unlimited, DailyBudget: -1})
	if err != nil {
		return err
	}
	sfc, err := salesforce.New(salesforce.Config{AccessToken: vars["SALESFORCE_ACCESS_TOKEN"], InstanceURL: vars["SALESFORCE_INSTANCE_URL"],
		HTTPClient: httpc, Limiter: unlimited, DailyShare: 1})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "crmsync-backfill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "crmsync.db")})
	if err != nil {
		return err
	}
	defer st.Close()
	pol := playbook.Policy()
	hsLink, sfLink := playbook.LinkFields()
	s, err := crmsync.NewSync(crmsync.SyncConfig{A: hc, B: sfc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hsLink, LinkFieldB: sfLink})
	if err != nil {
		return err
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler), LeaseTTL: 10 * time.Minute})
	if err != nil {
		return err
	}

	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	go sampleHeap(&peakHeap, stop)
	runtime.GC()
	start, cpu0 := time.Now(), cpuTime()
	rep, _, err := s.RunOnce(ctx, eng, "backfill")
	wall, cpu := time.Since(start), cpuTime()-cpu0
	close(stop)
	if err != nil {
		return err
	}
	if w := rep.Writes(); w < n { // creates both ways, plus write-backs
		return fmt.Errorf("size %d: only %d records written", n, w)
	}
	per10k := func(d time.Duration) time.Duration {
		return time.Duration(float64(d) / float64(2*n) * 10_000).Round(10 * time.Millisecond)
	}
	fmt.Printf("| %d | %d | %s | %s | %s | %.0f MB | %.0f MB |\n", n, rep.Writes(), wall.Round(100*time.Millisecond),
		per10k(wall), per10k(cpu), float64(peakHeap.Load())/1e6, float64(peakRSS())/1e6)
	return nil
}

// cpuTime is the user and system CPU time this process has used: the
// sync's own work, without the fakes (another process).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleHeap records the highest heap-in-use seen until stop closes.
func sampleHeap(peak *atomic.Uint64, stop chan struct{}) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		if v := s[0].Value.Uint64() + s[1].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// peakRSS reads the process's high-water resident set size (Linux).
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// serveFakes serves both fakes, seeded with n distinct contacts each, and
// prints their addresses, then READY; it runs until killed.
func serveFakes(n int) error {
	hs, err := hubspottest.New(hubspottest.Config{RateLimit: -1, SearchRateLimit: -1, DailyLimit: -1})
	if err != nil {
		return err
	}
	for _, p := range playbook.HubSpotProperties() {
		hs.DefineProperty("contacts", p)
	}
	hs.SeedContacts(n)
	_, sfLink := playbook.LinkFields()
	sf, err := salesforcetest.New(salesforcetest.Config{ExternalIDField: sfLink, Fields: playbook.SalesforceFields(),
		DailyLimit: 1 << 40, MaxInFlight: 1000})
	if err != nil {
		return err
	}
	batch := make([]crmsync.Fields, 0, 1000)
	for i := range n {
		batch = append(batch, crmsync.Fields{"FirstName": "Sales", "LastName": fmt.Sprint("Person", i), "Email": fmt.Sprintf("sf-%d@example.com", i)})
		if len(batch) == cap(batch) || i == n-1 {
			sf.Seed(batch...)
			batch = batch[:0]
		}
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("HUBSPOT_BASE_URL=%s\nHUBSPOT_TOKEN=%s\n", hs.URLFor(hl.Addr()), hubspottest.DefaultToken)
	fmt.Printf("SALESFORCE_INSTANCE_URL=http://%s\nSALESFORCE_ACCESS_TOKEN=%s\nREADY\n", sl.Addr(), sf.Token())
	time.Sleep(10 * time.Millisecond) // stamps of the seeds fall before the pass's window ends
	go http.Serve(hl, hs.Handler())
	return http.Serve(sl, sf.Handler())
}
