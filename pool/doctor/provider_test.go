package doctor

import "testing"

func TestProviderOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, host   string
		port         uint16
		want         string // "" = not recognised
		pooler, read bool
	}{
		{"neon pooler", "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech", 5432, "Neon pooled endpoint (PgBouncer, transaction mode)", true, false},
		{"neon direct", "ep-cool-darkness-123456.us-east-2.aws.neon.tech.", 5432, "Neon direct endpoint", false, false},
		{"supabase transaction", "aws-0-eu-west-1.pooler.supabase.com", 6543, "Supabase pooler (Supavisor), transaction mode", true, false},
		{"supabase session", "aws-0-eu-west-1.pooler.supabase.com", 5432, "Supabase pooler (Supavisor), session mode", false, false},
		{"supabase direct", "db.abcdefgh.supabase.co", 5432, "Supabase direct connection", false, false},
		{"rds proxy", "my-proxy.proxy-c1abcdefgh.us-east-1.rds.amazonaws.com", 5432, "AWS RDS Proxy", true, false},
		{"aurora reader", "my-cluster.cluster-ro-c1abcdefgh.us-east-1.rds.amazonaws.com", 5432, "AWS Aurora reader endpoint", false, true},
		{"aurora writer", "My-Cluster.Cluster-c1abcdefgh.us-east-1.rds.amazonaws.com", 5432, "AWS Aurora cluster (writer) endpoint", false, false},
		{"aurora custom", "x.cluster-custom-c1abcdefgh.us-east-1.rds.amazonaws.com", 5432, "AWS Aurora custom endpoint", false, false},
		{"rds instance", "mydb.c1abcdefgh.us-east-1.rds.amazonaws.com", 5432, "AWS RDS instance", false, false},
		{"azure", "myserver.postgres.database.azure.com", 5432, "Azure Database for PostgreSQL", false, false},
		{"azure pgbouncer", "myserver.postgres.database.azure.com", 6432, "Azure Database for PostgreSQL, built-in PgBouncer", true, false},
		{"other", "db.example.com", 5432, "", false, false},
		{"loopback", "127.0.0.1", 5432, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, ok := providerOf(tt.host, tt.port)
			if ok != (tt.want != "") || e.name != tt.want || e.pooler != tt.pooler || e.readOnly != tt.read {
				t.Errorf("providerOf(%q, %d) = %+v, %v; want %q pooler=%v readOnly=%v", tt.host, tt.port, e, ok, tt.want, tt.pooler, tt.read)
			}
		})
	}
}
