"""The admin's user pages, deleting through actions.accounts.delete_user (files, graph, live spool
too, not only the rows). Imported by urls.py before the admin's URLs are built."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from actions.accounts import delete_user


class UserAdminDeletingEverywhere(UserAdmin):
    def delete_model(self, request, obj):
        delete_user(obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            delete_user(user)


admin.site.unregister(User)
admin.site.register(User, UserAdminDeletingEverywhere)
