package org.fhirsafety.hapi;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The FHIR-facing settings of this server, read from {@code docker/hapi/settings.json} (copied into the jar
 * as {@code fhir-safety/settings.json}). The same file lists the official image's {@code hapi.fhir.*}
 * properties that docker/compose.yml must set, so the jar and the Docker setup cannot drift apart silently.
 * Runtime-only choices (port, database) are Spring properties; see application.yaml.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record ServerSettings(
		@JsonProperty(value = "fhir_version", required = true) String fhirVersion,
		@JsonProperty(value = "fhir_base", required = true) String fhirBase,
		@JsonProperty(value = "port", required = true) int port,
		@JsonProperty(value = "subscription_resthook", required = true) boolean subscriptionResthook,
		@JsonProperty(value = "cors", required = true) boolean cors,
		@JsonProperty(value = "cors_allowed_origin", required = true) String corsAllowedOrigin,
		@JsonProperty(value = "cors_allow_credentials", required = true) boolean corsAllowCredentials,
		@JsonProperty(value = "allow_external_references", required = true) boolean allowExternalReferences,
		@JsonProperty(value = "client_id_strategy", required = true) String clientIdStrategy,
		@JsonProperty(value = "server_id_strategy", required = true) String serverIdStrategy,
		@JsonProperty(value = "enforce_referential_integrity_on_write", required = true)
				boolean enforceReferentialIntegrityOnWrite,
		@JsonProperty(value = "enforce_referential_integrity_on_delete", required = true)
				boolean enforceReferentialIntegrityOnDelete,
		@JsonProperty(value = "auto_create_placeholder_reference_targets", required = true)
				boolean autoCreatePlaceholderReferenceTargets,
		@JsonProperty(value = "validation", required = true) boolean validation,
		@JsonProperty(value = "validation_requests_enabled", required = true) boolean validationRequestsEnabled,
		@JsonProperty(value = "allow_multiple_delete", required = true) boolean allowMultipleDelete,
		@JsonProperty(value = "expunge_enabled", required = true) boolean expungeEnabled,
		@JsonProperty(value = "reuse_cached_search_results_millis", required = true)
				long reuseCachedSearchResultsMillis,
		@JsonProperty(value = "default_page_size", required = true) int defaultPageSize,
		@JsonProperty(value = "max_page_size", required = true) int maxPageSize,
		@JsonProperty(value = "narrative_enabled", required = true) boolean narrativeEnabled,
		@JsonProperty(value = "bulk_export_enabled", required = true) boolean bulkExportEnabled,
		@JsonProperty(value = "hibernate_search", required = true) String hibernateSearch,
		@JsonProperty(value = "starter_properties", required = true) Map<String, String> starterProperties) {

	static final String RESOURCE = "fhir-safety/settings.json";
	static final String HIBERNATE_SEARCH_ENABLED = "spring.jpa.properties.hibernate.search.enabled";

	/** Loads the settings bundled in the jar; fails startup loudly if the file is missing or incomplete. */
	public static ServerSettings load() {
		try (InputStream in = ServerSettings.class.getClassLoader().getResourceAsStream(RESOURCE)) {
			if (in == null) {
				throw new IllegalStateException(RESOURCE + " is not on the classpath (rebuild with scripts/hapi build)");
			}
			ServerSettings settings = new ObjectMapper().readValue(in, ServerSettings.class);
			if (!"R4".equals(settings.fhirVersion())) {
				throw new IllegalStateException("Only fhir_version R4 is supported, got " + settings.fhirVersion());
			}
			if (!"lucene".equals(settings.hibernateSearch())
					|| !"true".equals(settings.starterProperties().get(HIBERNATE_SEARCH_ENABLED))) {
				// HAPI needs Hibernate Search to $expand ValueSets over stored CodeSystems.
				throw new IllegalStateException("hibernate_search must be lucene, with " + HIBERNATE_SEARCH_ENABLED
						+ "=true in starter_properties");
			}
			return settings;
		} catch (IOException e) {
			throw new UncheckedIOException("Cannot read " + RESOURCE, e);
		}
	}

	/**
	 * Spring properties shared with the official image: the {@code spring.*} entries of starter_properties
	 * (Hibernate Search with Lucene) plus the default port. They become the jar's default properties, so the
	 * command line, the environment or application.yaml can still override them.
	 */
	public Map<String, Object> springDefaults() {
		Map<String, Object> defaults = new LinkedHashMap<>();
		starterProperties().forEach((key, value) -> {
			if (key.startsWith("spring.")) {
				defaults.put(key, value);
			}
		});
		defaults.put("server.port", port());
		return defaults;
	}

	/** The servlet mapping for {@link #fhirBase()}, e.g. {@code /fhir/*}. */
	public String servletMapping() {
		String base = fhirBase().endsWith("/") ? fhirBase().substring(0, fhirBase().length() - 1) : fhirBase();
		return base + "/*";
	}
}
