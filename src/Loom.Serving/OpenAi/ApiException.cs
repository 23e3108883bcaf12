using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

namespace Loom.Serving.OpenAi;

/// <summary>
/// A request the server refuses, with the HTTP status and the fields of OpenAI's error object; the
/// server writes it as <c>{"error": {"message", "type", "param", "code"}}</c> and goes on serving.
/// </summary>
internal sealed class ApiException(int status, string message, string type, string? param = null, string? code = null) : Exception(message)
{
    public int Status => status;

    public ErrorBody Body => new(new ErrorDetail(Message, type, param, code));

    public static ApiException InvalidRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    public static ApiException InvalidJson(string detail) =>
        new(StatusCodes.Status400BadRequest, $"the request body is not valid JSON ({detail}); send one JSON object", "invalid_request_error", null, "invalid_json");

    public static ApiException ContextLengthExceeded(string param, int promptTokens, int contextLength) =>
        new(StatusCodes.Status400BadRequest,
            $"the prompt has {promptTokens} tokens, but this model's context is {contextLength} tokens and the reply needs at least one: shorten the prompt",
            "invalid_request_error", param, "context_length_exceeded");

    /// <summary>An encoder-decoder's prompt longer than its encoder takes (its reply does not share the prompt's context).</summary>
    public static ApiException EncoderInputTooLong(string param, int promptTokens, int contextLength) =>
        new(StatusCodes.Status400BadRequest,
            $"the prompt has {promptTokens} tokens, but this model's encoder takes at most {contextLength}: shorten the prompt",
            "invalid_request_error", param, "context_length_exceeded");

    public static ApiException ModelNotFound(string requested, string served) =>
        new(StatusCodes.Status404NotFound, $"the model '{requested}' does not exist; this server serves '{served}' (see GET /v1/models)",
            "invalid_request_error", "model", "model_not_found");

    public static ApiException MissingApiKey() =>
        new(StatusCodes.Status401Unauthorized, "no API key was provided: send the header 'Authorization: Bearer YOUR_KEY'",
            "invalid_request_error", null, "invalid_api_key");

    public static ApiException WrongApiKey() =>
        new(StatusCodes.Status401Unauthorized, "the API key is not valid for this server", "invalid_request_error", null, "invalid_api_key");

    public static ApiException Overloaded(string message) =>
        new(StatusCodes.Status429TooManyRequests, message, "rate_limit_error", null, "queue_full");

    public static ApiException NotFound(string method, string path) =>
        new(StatusCodes.Status404NotFound, $"no endpoint {method} {path}; this server has POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health and GET /metrics",
            "invalid_request_error", null, "unknown_url");

    public static ApiException MethodNotAllowed(string method, string path, string allowed) =>
        new(StatusCodes.Status405MethodNotAllowed, $"{path} does not take {method}: use {allowed}", "invalid_request_error", null, "method_not_allowed");

    /// <summary>An error status another part of ASP.NET Core set without a body (e.g. 405 for a wrong method).</summary>
    public static ApiException FromStatus(int status, string method, string path) =>
        new(status, $"{method} {path} was refused with HTTP {status}", "invalid_request_error");

    public static ApiException Internal(string message) =>
        new(StatusCodes.Status500InternalServerError, $"the server failed: {message}", "server_error");
}

/// <summary>OpenAI's error response.</summary>
internal sealed record ErrorBody(ErrorDetail Error);

/// <summary>OpenAI's error object; <c>param</c> and <c>code</c> are written as null when unset, as OpenAI does.</summary>
internal sealed record ErrorDetail(
    string Message,
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);
