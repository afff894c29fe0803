package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/crmsync/crmsync"
)

// LatestChanger is the one call a Probe makes; *salesforce.Client
// implements it with one queryAll.
type LatestChanger interface {
	// LatestChange returns the newest SystemModstamp of object's records
	// (deleted ones included) after after, or false when there is none;
	// a zero after means any record.
	LatestChange(ctx context.Context, object string, after time.Time) (time.Time, bool, error)
}

// ProbeConfig configures a Probe.
type ProbeConfig struct {
	// Client makes the queries (a *salesforce.Client); required.
	Client LatestChanger
	// Objects are the objects to probe ("Contact"); required.
	Objects []string
	// Interval is the wait between rounds; zero means 15 seconds.
	Interval time.Duration
	// Positions stores the newest stamp seen per object; required.
	Positions PositionStore
	// Stream prefixes the position names: Stream + object; "" means
	// "salesforce-probe:".
	Stream string
	// Trigger is called for objects with changes; required.
	Trigger TriggerFunc
	// Logger receives failed rounds (Warn); nil means slog.Default().
	Logger *slog.Logger
}

// Probe finds changes in orgs without Change Data Capture: each round, one
// query per object for anything modified after the newest stamp seen. The
// first round of an object with no stored stamp only learns the newest
// stamp: the scheduled passes cover what came before. A record committed
// with a stamp older than one already seen (a long transaction) is left to
// them too.
type Probe struct {
	cfg ProbeConfig
	log *slog.Logger
}

// NewProbe returns a Probe for cfg; it reports an error naming an invalid
// field.
func NewProbe(cfg ProbeConfig) (*Probe, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("pubsub: ProbeConfig.Client is required")
	case len(cfg.Objects) == 0:
		return nil, errors.New("pubsub: ProbeConfig.Objects is required")
	case cfg.Positions == nil:
		return nil, errors.New("pubsub: ProbeConfig.Positions is required")
	case cfg.Trigger == nil:
		return nil, errors.New("pubsub: ProbeConfig.Trigger is required")
	case cfg.Interval < 0:
		return nil, errors.New("pubsub: ProbeConfig.Interval must not be negative")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.Stream == "" {
		cfg.Stream = "salesforce-probe:"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Probe{cfg: cfg, log: cfg.Logger}, nil
}

// Run probes every Interval until ctx ends, then returns ctx's error. A
// failed round is logged and the next one tries again.
func (p *Probe) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if err := p.Check(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("salesforce change probe failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Check runs one round: one query per object, then one trigger call for
// the objects that changed, then the new stamps are stored (so that a
// process killed during the trigger probes them again). It returns the
// errors after trying every object.
func (p *Probe) Check(ctx context.Context) error {
	var changed []string
	var errs []error
	type stamp struct {
		obj string
		at  time.Time
	}
	var stamps []stamp
	for _, obj := range p.cfg.Objects {
		latest, store, trigger, err := p.check(ctx, obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if trigger {
			changed = append(changed, obj)
		}
		if store {
			stamps = append(stamps, stamp{obj, latest})
		}
	}
	if len(changed) > 0 {
		p.cfg.Trigger(ctx, changed, false)
	}
	for _, st := range stamps {
		text, err := st.at.UTC().MarshalText()
		if err == nil {
			err = p.cfg.Positions.SetPosition(ctx, p.cfg.Stream+st.obj, text)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pubsub: store probe stamp of %s: %w", st.obj, err))
		}
	}
	return errors.Join(errs...)
}

// check probes one object: it returns the stamp to store, whether to store
// it, and whether the object changed since the stored stamp. An object
// never probed gets a stamp (the newest, or zero when it has no records)
// without a trigger.
func (p *Probe) check(ctx context.Context, obj string) (latest time.Time, store, trigger bool, err error) {
	var after time.Time
	pos, err := p.cfg.Positions.GetPosition(ctx, p.cfg.Stream+obj)
	known := err == nil
	switch {
	case errors.Is(err, crmsync.ErrNotFound):
	case err != nil:
		return time.Time{}, false, false, fmt.Errorf("pubsub: load probe stamp of %s: %w", obj, err)
	default:
		if err := after.UnmarshalText(pos); err != nil {
			p.log.Warn("salesforce change probe: unreadable stored stamp, starting over", "object", obj)
			after, known = time.Time{}, false
		}
	}
	latest, ok, err := p.cfg.Client.LatestChange(ctx, obj, after)
	if err != nil {
		return time.Time{}, false, false, err
	}
	if !ok {
		return time.Time{}, !known, false, nil
	}
	return latest, true, known, nil
}
