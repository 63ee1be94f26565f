package org.fhirsafety.hapi;

import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.SubscriptionTriggeringProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.CorsInterceptor;
import ca.uhn.fhir.rest.server.interceptor.RequestValidatingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import ca.uhn.fhir.validation.IValidatorModule;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.web.cors.CorsConfiguration;

/**
 * HTTP side of the server: one HAPI {@link RestfulServer} servlet at {@code fhir_base} (default /fhir) with
 * the JPA resource providers, system operations (transaction, history, $expunge), $expand / $validate-code,
 * $trigger-subscription, Bulk Data $export, CORS and the optional request validation.
 */
@Configuration
public class RestServerConfig {

	private static final Logger LOG = LoggerFactory.getLogger(RestServerConfig.class);

	@Bean
	public RestfulServer restfulServer(
			ServerSettings settings,
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			IValidatorModule validatorModule,
			DatabaseBackedPagingProvider pagingProvider,
			ValueSetOperationProvider valueSetOperationProvider,
			SubscriptionTriggeringProvider subscriptionTriggeringProvider,
			BulkDataExportProvider bulkDataExportProvider) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		if (!settings.narrativeEnabled()) {
			// No generated narratives: resources are stored as sent.
			systemDao.getContext().setNarrativeGenerator(new NullNarrativeGenerator());
		}
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		server.registerProvider(valueSetOperationProvider);
		server.registerProvider(subscriptionTriggeringProvider);
		if (settings.bulkExportEnabled()) {
			server.registerProvider(bulkDataExportProvider);
		}

		JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport);
		capabilities.setImplementationDescription("fhir-safety HAPI FHIR R4 server");
		server.setServerConformanceProvider(capabilities);

		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);

		if (settings.cors()) {
			server.registerInterceptor(corsInterceptor(settings.corsAllowedOrigin(), settings.corsAllowCredentials()));
		}
		if (settings.validationRequestsEnabled()) {
			// Reject writes whose resource has validation errors (same as the official image's
			// hapi.fhir.validation.requests_enabled). $validate works either way.
			RequestValidatingInterceptor validating = new RequestValidatingInterceptor();
			validating.setFailOnSeverity(ResultSeverityEnum.ERROR);
			validating.setValidatorModules(List.of(validatorModule));
			server.registerInterceptor(validating);
		}
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer server, ServerSettings settings) {
		ServletRegistrationBean<RestfulServer> registration =
				new ServletRegistrationBean<>(server, settings.servletMapping());
		registration.setName("fhir");
		// Initialise HAPI while the application starts, not on the first request: when /metadata answers the
		// server is fully ready.
		registration.setLoadOnStartup(1);
		LOG.info("FHIR base {} (resthook subscriptions {}, CORS {})",
				settings.fhirBase(), settings.subscriptionResthook(), settings.cors());
		return registration;
	}

	static CorsInterceptor corsInterceptor(String allowedOrigin, boolean allowCredentials) {
		CorsConfiguration cors = new CorsConfiguration();
		cors.addAllowedOriginPattern(allowedOrigin);
		cors.setAllowedHeaders(List.of(
				"Origin", "Accept", "Content-Type", "Authorization", "Cache-Control", "Prefer", "If-Match",
				"If-None-Match", "If-None-Exist", "X-Requested-With"));
		cors.setExposedHeaders(List.of("Location", "Content-Location", "ETag", "Last-Modified"));
		cors.setAllowedMethods(List.of("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"));
		cors.setAllowCredentials(allowCredentials);
		return new CorsInterceptor(cors);
	}
}
