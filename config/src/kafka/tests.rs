use super::*;

fn parse(text: &str) -> KafkaConfig {
    toml::from_str(text).expect("parses")
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["kafka.test".into()]).expect("params");
    params.self_signed(&key).expect("certificate").pem()
}

#[test]
fn sasl_in_clear_is_refused_unless_the_operator_allows_it() {
    let typed = parse(
        "brokers = \"b:9092\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl = { mechanism = \"PLAIN\", username = \"u\", password_env = \"P\" }",
    );
    let error = typed.validate().expect_err("refused");
    assert_eq!(error.field, "security_protocol", "{error}");
    assert!(error.to_string().contains("allow_plaintext_sasl"), "{error}");
    let raw = parse("brokers = \"b:9092\"\noptions = { \"security.protocol\" = \"sasl_plaintext\" }");
    assert_eq!(
        raw.validate().expect_err("refused through options too").field,
        "security_protocol"
    );
    let mut allowed = typed.clone();
    allowed.allow_plaintext_sasl = true;
    assert_eq!(allowed.validate(), Ok(()));
}

#[test]
fn settings_that_do_not_fit_the_protocol_name_their_field() {
    let tls_in_clear = parse("brokers = \"b:9092\"\ntls = { ca_file = \"/ca.pem\" }");
    assert_eq!(tls_in_clear.validate().expect_err("tls without ssl").field, "tls");
    let no_credentials = parse("brokers = \"b:9092\"\nsecurity_protocol = \"sasl_ssl\"");
    assert_eq!(
        no_credentials.validate().expect_err("sasl_ssl needs sasl").field,
        "sasl"
    );
    let half = parse("brokers = \"b:9092\"\nsecurity_protocol = \"ssl\"\ntls = { cert_file = \"/c.pem\" }");
    assert_eq!(half.validate().expect_err("no key").field, "tls.key_file");
    let both = parse("brokers = \"b:9092\"\nsecurity_protocol = \"ssl\"\ntls = { ca_file = \"/a\", ca_env = \"A\" }");
    assert_eq!(both.validate().expect_err("file and env").field, "tls.ca_file");
    let error = toml::from_str::<KafkaConfig>("brokers = \"b:9092\"\nsasl = { mechanism = \"GSSAPI\" }")
        .expect_err("kinit is not offered");
    assert!(error.to_string().contains("SCRAM-SHA-512"), "{error}");
    let error = toml::from_str::<KafkaConfig>("brokers = \"b:9092\"\ntls = { ca_fil = \"/a\" }").expect_err("typo");
    assert!(error.to_string().contains("ca_fil"), "{error}");
}

#[test]
fn files_become_librdkafka_properties_after_their_contents_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem()).expect("write");
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret-pass\n").expect("write");
    let mut config = parse(&format!(
        "brokers = \"b:9093\"\nsecurity_protocol = \"sasl_ssl\"\ntls = {{ ca_file = {ca:?} }}\n\
         sasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"router\", password_file = {password:?} }}\n\
         options = {{ \"sasl.mechanism\" = \"SCRAM-SHA-256\" }}"
    ));
    config.resolve().expect("resolves");
    assert_eq!(config.options["security.protocol"], "sasl_ssl");
    assert_eq!(config.options["ssl.ca.location"], ca.display().to_string());
    assert_eq!(config.options["sasl.username"], "router");
    assert_eq!(
        config.options["sasl.password"], "s3cret-pass",
        "the file's newline is not part of it"
    );
    assert_eq!(
        config.options["sasl.mechanism"], "SCRAM-SHA-256",
        "the operator's raw option wins"
    );
    let before = config.options.clone();
    config.resolve().expect("again");
    assert_eq!(config.options, before, "resolving twice changes nothing");
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn a_broken_or_missing_file_fails_with_the_setting_that_names_it() {
    let dir = tempfile::tempdir().expect("dir");
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let mut config = parse(&format!(
        "brokers = \"b:9093\"\nsecurity_protocol = \"ssl\"\ntls = {{ ca_file = {garbage:?} }}"
    ));
    let error = config.resolve().expect_err("no certificate");
    assert_eq!(error.field, "tls.ca_file", "{error}");
    let missing = dir.path().join("absent.pem");
    let mut config = parse(&format!(
        "brokers = \"b:9093\"\nsecurity_protocol = \"ssl\"\ntls = {{ ca_file = {ca:?}, cert_file = {missing:?}, key_file = {missing:?} }}",
        ca = {
            let ca = dir.path().join("good.pem");
            std::fs::write(&ca, ca_pem()).expect("write");
            ca
        }
    ));
    let error = config.resolve().expect_err("no client certificate file");
    assert_eq!(error.field, "tls.cert_file", "{error}");
    assert!(error.to_string().contains("absent.pem"), "{error}");
    let mut config = parse(
        "brokers = \"b:9093\"\nsecurity_protocol = \"sasl_ssl\"\n\
         sasl = { mechanism = \"PLAIN\", username = \"u\", password_env = \"SWITCHYARD_TEST_UNSET_PASSWORD\" }",
    );
    let error = config.resolve().expect_err("no password");
    assert_eq!(error.field, "sasl.password_env", "{error}");
}

#[test]
fn tls_without_a_ca_of_the_operators_looks_for_the_systems_roots() {
    let mut typed = parse("brokers = \"b:9093\"\nsecurity_protocol = \"SSL\"");
    typed.resolve().expect("resolves");
    assert_eq!(typed.options["ssl.ca.location"], "probe");
    let mut raw = parse(
        "brokers = \"b:9093\"\noptions = { \"security.protocol\" = \"SASL_SSL\", \"sasl.mechanism\" = \"PLAIN\" }",
    );
    raw.resolve().expect("resolves");
    assert_eq!(
        raw.options["ssl.ca.location"], "probe",
        "raw options asking for TLS too"
    );
    let mut plain = parse("brokers = \"b:9092\"");
    plain.resolve().expect("resolves");
    assert!(!plain.options.contains_key("ssl.ca.location"));
}
