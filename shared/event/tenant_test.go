package event

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// fixtureIdentity is the x-rh-identity of the example messages.
const fixtureIdentity = "eyJpZGVudGl0eSI6eyJvcmdfaWQiOiIxMjM0NTY3IiwiYWNjb3VudF9udW1iZXIiOiIiLCJpbnRlcm5hbCI6eyJvcmdfaWQiOiIifSwidHlwZSI6IlN5c3RlbSJ9LCJlbnRpdGxlbWVudHMiOm51bGx9"

func TestResolveTenant(t *testing.T) {
	cases := []struct {
		name                   string
		org, account, identity string
		want                   Tenant
		wantErr                error
	}{
		{name: "both headers", org: "1234567", account: "7654321", identity: fixtureIdentity,
			want: Tenant{OrgID: "1234567", AccountNumber: "7654321"}},
		{name: "headers win over the identity", org: "111", identity: b64(`{"identity":{"org_id":"222","account_number":"333"}}`),
			want: Tenant{OrgID: "111"}},
		{name: "account header alone wins", account: "333", identity: b64(`{"identity":{"org_id":"222"}}`),
			want: Tenant{AccountNumber: "333"}},
		{name: "headers win and a bad identity is not decoded", org: "111", identity: "%%% not base64 %%%",
			want: Tenant{OrgID: "111"}},
		{name: "headers without any identity", org: "111", want: Tenant{OrgID: "111"}},
		{name: "empty headers count as absent", identity: fixtureIdentity, want: Tenant{OrgID: "1234567"}},
		{name: "identity org and account", identity: b64(`{"identity":{"org_id":"222","account_number":"333","type":"User"}}`),
			want: Tenant{OrgID: "222", AccountNumber: "333"}},
		{name: "identity org wins over internal org", identity: b64(`{"identity":{"org_id":"222","internal":{"org_id":"999"}}}`),
			want: Tenant{OrgID: "222"}},
		{name: "internal org when identity org is empty", identity: b64(`{"identity":{"org_id":"","internal":{"org_id":"999"}}}`),
			want: Tenant{OrgID: "999"}},
		{name: "internal org when identity org is absent", identity: b64(`{"identity":{"account_number":"333","internal":{"org_id":"999"}}}`),
			want: Tenant{OrgID: "999", AccountNumber: "333"}},
		{name: "account-only identity", identity: b64(`{"identity":{"account_number":"333","internal":{"org_id":""},"type":"System"},"entitlements":null}`),
			want: Tenant{AccountNumber: "333"}},
		{name: "identity with extra fields", identity: b64(`{"identity":{"org_id":"222","user":{"username":"u"},"system":{"cn":"x"},"auth_type":"basic"},"entitlements":{"insights":{"is_entitled":true}},"other":[1]}`),
			want: Tenant{OrgID: "222"}},

		{name: "nothing at all", wantErr: ErrNoTenant},
		{name: "identity without tenant", identity: b64(`{"identity":{"type":"System","internal":{"org_id":""}}}`), wantErr: ErrNoTenant},
		{name: "identity empty object", identity: b64(`{}`), wantErr: ErrNoTenant},
		{name: "identity JSON null", identity: b64(`null`), wantErr: ErrNoTenant},
		{name: "bad base64", identity: "not base64!", wantErr: ErrBadIdentity},
		{name: "url-safe alphabet", identity: strings.NewReplacer("+", "-", "/", "_").Replace(b64(`{"identity":{"org_id":">>>???"}}`)), wantErr: ErrBadIdentity},
		{name: "base64 of non-JSON", identity: b64("org_id=222"), wantErr: ErrBadIdentity},
		{name: "base64 of a JSON array", identity: b64(`[{"identity":{"org_id":"222"}}]`), wantErr: ErrBadIdentity},
		{name: "base64 of a JSON string", identity: b64(`"222"`), wantErr: ErrBadIdentity},
		{name: "org id of the wrong type", identity: b64(`{"identity":{"org_id":222}}`), wantErr: ErrBadIdentity},
		{name: "identity of the wrong type", identity: b64(`{"identity":"222"}`), wantErr: ErrBadIdentity},
		{name: "truncated JSON", identity: b64(`{"identity":{"org_id":"222"`), wantErr: ErrBadIdentity},

		{name: "control character in the org header", org: "111\n", wantErr: ErrBadTenant},
		{name: "control character in the account header", org: "111", account: "3\x0033", wantErr: ErrBadTenant},
		{name: "DEL in the org header", org: "111\x7f", wantErr: ErrBadTenant},
		{name: "space in the org header", org: "111 222", wantErr: ErrBadTenant},
		{name: "non-ASCII org header", org: "١١١", wantErr: ErrBadTenant},
		{name: "org header too long", org: strings.Repeat("1", MaxTenantValue+1), wantErr: ErrBadTenant},
		{name: "longest org header", org: strings.Repeat("1", MaxTenantValue), want: Tenant{OrgID: strings.Repeat("1", MaxTenantValue)}},
		{name: "control character in the identity's org", identity: b64(`{"identity":{"org_id":"222\r\nx: y"}}`), wantErr: ErrBadTenant},
		{name: "identity's account too long", identity: b64(`{"identity":{"org_id":"222","account_number":"` + strings.Repeat("3", 65) + `"}}`), wantErr: ErrBadTenant},
		{name: "control character in the identity, headers set", org: "111", identity: fixtureIdentity + "\n", wantErr: ErrBadIdentity},
		{name: "identity too large, headers set", org: "111", identity: strings.Repeat("A", MaxIdentityBytes+4), wantErr: ErrIdentityTooLarge},
		{name: "identity too large", identity: b64(`{"identity":{"org_id":"222","pad":"` + strings.Repeat("x", MaxIdentityBytes) + `"}}`), wantErr: ErrIdentityTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveTenant(tc.org, tc.account, tc.identity)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if got != (Tenant{}) {
					t.Errorf("tenant %+v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The identity is a credential: no error may repeat it.
func TestResolveTenantErrorsNeverContainIdentity(t *testing.T) {
	const marker = "SECRET-MARKER-7f3a"
	for _, id := range []string{
		marker,
		b64(marker),
		b64(`{"identity":{"org_id":` + marker + `}}`),
		b64(`{"identity":{"org_id":1,"x":"` + marker + `"}}`),
		b64(`{"identity":{"type":"` + marker + `"}}`),
		b64(`{"identity":{"org_id":"` + marker + `"`),
	} {
		_, err := ResolveTenant("", "", id)
		if err == nil {
			t.Errorf("%q accepted", id)
			continue
		}
		if err != ErrBadIdentity && err != ErrNoTenant && err != ErrBadTenant { //nolint:errorlint // the very sentinel, unwrapped: no detail may ride along
			t.Errorf("error %v is not one of the fixed errors", err)
		}
		if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), id) {
			t.Errorf("error %q repeats the identity", err)
		}
	}
}

func TestTenantKey(t *testing.T) {
	cases := []struct {
		t    Tenant
		want string
	}{
		{Tenant{OrgID: "1234567", AccountNumber: "7654321"}, "1234567"},
		{Tenant{OrgID: "1234567"}, "1234567"},
		{Tenant{AccountNumber: "7654321"}, "7654321"},
		{Tenant{}, ""},
	}
	for _, tc := range cases {
		if got := tc.t.Key(); got != tc.want {
			t.Errorf("%+v.Key() = %q, want %q", tc.t, got, tc.want)
		}
	}
}

func FuzzResolveTenant(f *testing.F) {
	for _, fx := range allFixtures(f) {
		f.Add(fx.header(HeaderOrgID), fx.header(HeaderAccount), fx.header(HeaderIdentity))
		f.Add("", "", fx.header(HeaderIdentity))
	}
	seeds := [][3]string{
		{"", "", ""},
		{"1", "", ""},
		{"", "2", ""},
		{"1", "2", "garbage"},
		{"", "", "garbage"},
		{"", "", "===="},
		{"", "", b64("not json")},
		{"", "", b64("null")},
		{"", "", b64("[]")},
		{"", "", b64(`{"identity":{"org_id":"222"}}`)},
		{"", "", b64(`{"identity":{"internal":{"org_id":"999"}}}`)},
		{"", "", b64(`{"identity":{"account_number":"333"}}`)},
		{"", "", b64(`{"identity":{"org_id":222}}`)},
		{"", "", b64(`{"identity":{}}`)},
		{"", "", b64(`{"identity":{"org_id":"\ud800"}}`)},
		{"\xff", "", ""},
		{"1\n", "", ""},
		{"1", "2\x00", ""},
		{"", "", b64(`{"identity":{"org_id":"2\u0000"}}`)},
		{"1", "", "a\rb"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, org, account, identity string) {
		got, err := ResolveTenant(org, account, identity)
		if err == nil && (!ValidTenantValue(got.OrgID) || !ValidTenantValue(got.AccountNumber)) {
			t.Fatalf("tenant %+v accepted with a value Sources cannot hold", got)
		}
		if checkIdentity(identity) != nil {
			if err == nil {
				t.Fatalf("identity of %d bytes with stray bytes accepted", len(identity))
			}
			return
		}
		if org != "" || account != "" {
			valid := ValidTenantValue(org) && ValidTenantValue(account)
			if valid && (err != nil || got != (Tenant{OrgID: org, AccountNumber: account})) {
				t.Fatalf("headers %q/%q gave %+v, %v", org, account, got, err)
			}
			if !valid && err != ErrBadTenant { //nolint:errorlint // the very sentinel, unwrapped
				t.Fatalf("headers %q/%q gave %+v, %v, want ErrBadTenant", org, account, got, err)
			}
			return
		}
		if err != nil {
			if err != ErrNoTenant && err != ErrBadIdentity && err != ErrBadTenant { //nolint:errorlint // the very sentinel, unwrapped
				t.Fatalf("unexpected error %v", err)
			}
			if got != (Tenant{}) {
				t.Fatalf("tenant %+v returned with error", got)
			}
			if identity == "" && err != ErrNoTenant { //nolint:errorlint // the very sentinel, unwrapped
				t.Fatalf("no identity: %v", err)
			}
			return
		}
		if got.Key() == "" {
			t.Fatalf("tenant %+v names nobody", got)
		}
		if identity == "" {
			t.Fatalf("tenant %+v out of nothing", got)
		}
	})
}
