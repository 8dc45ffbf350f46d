package config_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/pgsteady/pgsteady/config"
)

// The connection string Neon's console gives for a pooled endpoint.
func ExampleParse() {
	cfg, err := config.Parse("postgresql://neondb_owner:npg_S3cret@ep-patient-lake-a816cbtn-pooler.eastus2.azure.neon.tech/neondb?sslmode=require&channel_binding=require")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("pooler:", cfg.Pooler)
	fmt.Println("connections:", cfg.Size, "kept +", cfg.Overflow, "overflow =", cfg.MaxConns())
	fmt.Println("acquire timeout:", cfg.AcquireTimeout)
	fmt.Println("recycle:", cfg.Recycle, "+ up to", cfg.RecycleJitter)
	fmt.Println("pre-ping:", cfg.PrePing, "after", cfg.PrePingAfter, "idle, each ping within", cfg.PingTimeout)
	fmt.Println("connect timeout:", cfg.ConnectTimeout, "keepalive:", cfg.KeepAlive)
	for _, w := range cfg.Warnings {
		fmt.Println("warning:", w)
	}
	// Output:
	// pooler: transaction
	// connections: 10 kept + 20 overflow = 30
	// acquire timeout: 30s
	// recycle: 5m0s + up to 30s
	// pre-ping: idle after 1s idle, each ping within 2s
	// connect timeout: 10s keepalive: 30s
	// warning: channel_binding=require removed from the connection string (pgx then uses PGCHANNELBINDING or "prefer"); set pgsteady_keep_channel_binding=true or Config.KeepChannelBinding to keep it
}

// SQLAlchemy's pool options can ride along in the connection string; they are read and
// removed before pgx sees it. String never shows the password.
func ExampleParse_sqlAlchemyKeys() {
	cfg, err := config.Parse("host=db.example.com user=app password='s3cret pw' dbname=app " +
		"pool_size=5 max_overflow=10 pool_timeout=10 pool_recycle=600 pool_pre_ping=true")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg)
	// Output:
	// host=db.example.com user=app password=xxxxx dbname=app sslmode=require Size=5 Overflow=10 AcquireTimeout=10s Recycle=10m0s RecycleJitter=1m0s PrePing=always PrePingAfter=1s PingTimeout=2s ConnectTimeout=10s KeepAlive=30s HealthCheckPeriod=30s IdleTimeout=2m0s OverflowIdleTimeout=30s Pooler=none
}

// A URL copied from a Python service's SQLAlchemy settings names the driver in its scheme;
// Parse drops it and says so. Supabase's transaction pooler (port 6543) is recognised.
func ExampleParse_sqlAlchemyURL() {
	cfg, err := config.Parse("postgresql+psycopg2://postgres.abcd:s3cret@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pool_size=5")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("pooler:", cfg.Pooler, "size:", cfg.Size)
	for _, w := range cfg.Warnings {
		fmt.Println("warning:", w)
	}
	// Output:
	// pooler: transaction size: 5
	// warning: postgresql+psycopg2:// read as postgresql:// (+psycopg2 names a Python driver for SQLAlchemy; pgx needs none)
}

// A password pasted with a raw '@' is refused (libpq and pgx would read its tail as the
// host), and the error masks all of it.
func ExampleParse_rawAtInPassword() {
	_, err := config.Parse("postgres://app:p@ss@db.example.com/app")
	fmt.Println(err)
	// Output:
	// config: connection string must be a URL with each '@' in the user name or password written as %40
}

// DB_* variables; the password is escaped into the URL, whatever it contains.
func ExampleFromEnv() {
	restore := setenv(map[string]string{
		"DATABASE_URL": "",
		"DB_USER":      "neondb_owner",
		"DB_PASSWORD":  "p@ss/w:rd?",
		"DB_HOST":      "ep-patient-lake-a816cbtn-pooler.eastus2.azure.neon.tech",
		"DB_NAME":      "neondb",
	})
	defer restore()

	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Pooler, cfg.MaxConns())
	pcfg, err := cfg.PgxPoolConfig()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pcfg.ConnConfig.Password == "p@ss/w:rd?", pcfg.ConnConfig.TLSConfig != nil)
	// Output:
	// transaction 30
	// true true
}

func ExampleConfig_PgxPoolConfig() {
	cfg, err := config.Parse("postgres://app:s3cret@db.example.com/app?pooler=transaction")
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg.WarmUp = true // keep Size connections open
	pcfg, err := cfg.PgxPoolConfig()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("MaxConns:", pcfg.MaxConns, "MinConns:", pcfg.MinConns)
	fmt.Println("MaxConnLifetime:", pcfg.MaxConnLifetime, "jitter:", pcfg.MaxConnLifetimeJitter)
	fmt.Println("PingTimeout:", pcfg.PingTimeout, "HealthCheckPeriod:", pcfg.HealthCheckPeriod)
	fmt.Println("ConnectTimeout:", pcfg.ConnConfig.ConnectTimeout)
	fmt.Println("exec mode:", pcfg.ConnConfig.DefaultQueryExecMode)
	// Then: pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	// Output:
	// MaxConns: 30 MinConns: 10
	// MaxConnLifetime: 5m0s jitter: 30s
	// PingTimeout: 2s HealthCheckPeriod: 30s
	// ConnectTimeout: 10s
	// exec mode: exec
}

func ExampleError() {
	for _, dsn := range []string{
		"postgres://app:s3cret@db.example.com/app?max_overflow=-3",
		"postgres://app:s3cret@db.example.com/app?sslmode=disable",
		"postgres://app:s3cret@db.example.com:54x2/app",
	} {
		_, err := config.Parse(dsn)
		var e *config.Error
		if errors.As(err, &e) {
			fmt.Printf("%s: %v\n", e.Field, err)
		}
	}
	// Output:
	// max_overflow: config: max_overflow must be an integer >= 0, got -3
	// sslmode: config: sslmode must be require, verify-ca or verify-full for non-loopback host db.example.com (or pgsteady_allow_insecure=true), got disable
	// connection string: config: connection string: invalid port
}

// setenv sets vars ("" unsets) and returns a function that restores the previous values.
func setenv(vars map[string]string) (restore func()) {
	old := map[string]*string{}
	for k, v := range vars {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		if v == "" {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, v)
		}
	}
	return func() {
		for k, v := range old {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}
}
